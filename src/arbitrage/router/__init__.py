"""The Arbitrage Router: oracle-labelled step data, router training, evaluation and routing."""
