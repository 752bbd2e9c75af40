from transferkit.cli.app import main

main()
