"""`python -m rollguard` is the `rollguard` command."""

from rollguard.cli import main

if __name__ == "__main__":
    main()
