"""``python -m consumers run module:handler --topic T --group G``."""

from consumers.cli import main

main()
