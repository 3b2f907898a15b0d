from famous.cli.main import run

run()
