"""Prepares one real FAS dataset from its official download (README, "Real datasets").

    python tools/prepare_fas.py --dataset=oulu_npu --manual_dir=/path/to/OULU-NPU

Datasets: oulu_npu, casia_fasd, replay_attack, msu_mfsd, celeba_spoof. `--help` lists the
frame and face settings; the defaults are those of the protocol configs in configs/.
"""

import sys

from dtda_jax.data import prepare

if __name__ == "__main__":
    sys.exit(prepare.main())
