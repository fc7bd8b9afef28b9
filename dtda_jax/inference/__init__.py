"""Using trained models: the one batched scorer (`scoring`) and the predict command (`predict`)."""
