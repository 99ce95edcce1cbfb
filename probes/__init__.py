"""synfin's BPF programs (plain C, compiled by bcc at start-up), shipped inside the package.

``synfin.kernel.loader`` finds them here, installed or in the source tree alike.
"""

from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
