from tru_cli.cli import main

main()
