import sys

from fibkit.cli import main

sys.exit(main())
