from genomix.launcher import main

main()
