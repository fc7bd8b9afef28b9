"""The library every method builds on: mesh and sharding, train state, optimisers, the one
stage loop, checkpoints, run files and logs. Nothing in `core` imports a method."""
