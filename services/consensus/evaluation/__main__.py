"""`python -m services.consensus.evaluation DATASET_DIR [--json] [--policy dynamic] ...`."""

from services.consensus.evaluation.cli import main

main()
