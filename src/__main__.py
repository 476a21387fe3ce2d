"""`python -m voicefleet` runs the CLI."""

import sys

from voicefleet.cli import main

sys.exit(main())
