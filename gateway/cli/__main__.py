"""``python -m gateway.cli``: the ``edigw`` command, for tests and machines without the
console script on their PATH."""

from gateway.cli import main

if __name__ == "__main__":
    main()
