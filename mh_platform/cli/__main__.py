from mh_platform.cli import main

main()
