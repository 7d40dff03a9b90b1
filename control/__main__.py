"""`python -m control` is the `rollguard` command."""

from control.cli import main

if __name__ == "__main__":
    main()
