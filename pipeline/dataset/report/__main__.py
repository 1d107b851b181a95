"""``python -m pipeline.dataset.report DATASET_DIR [-o OUT] [--title T] [--max-samples N]``."""
from pipeline.dataset.report import main

if __name__ == "__main__":
    main()
