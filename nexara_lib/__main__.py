import sys

from nexara_lib.run.cli import main

sys.exit(main())
