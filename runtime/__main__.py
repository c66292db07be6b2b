"""``python -m runtime`` is the ``corral`` command."""

from .cli import main

if __name__ == "__main__":
    main()
