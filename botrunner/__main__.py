from botrunner.cli import main

main()
