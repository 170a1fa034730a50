"""``python -m peft_ntk_select``: the command line."""

import sys

from .cli import main

sys.exit(main())
