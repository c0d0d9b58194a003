import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples")


@pytest.fixture
def sample():
    def path(name):
        return os.path.join(SAMPLES, name if name.endswith(".nn") else name + ".nn")
    return path
