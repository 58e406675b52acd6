from nanobuild.cli import main

main()
