# The root pytest config imports test modules with --import-mode=importlib, which puts no test
# folder on sys.path; the deploy checks share one helper module, so put this folder there.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
