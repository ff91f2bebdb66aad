import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a progress bar on stderr

from workers.main import main

sys.exit(main())
