import sys
from pathlib import Path

# tests import their shared registry as `from tests.helpers import ...` or `from helpers import ...`
sys.path.insert(0, str(Path(__file__).parent))
