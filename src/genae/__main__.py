import sys

from genae.cli import main

sys.exit(main())
