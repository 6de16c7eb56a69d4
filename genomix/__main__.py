from genomix.cli import main

main()
