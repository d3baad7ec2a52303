"""searchrl: train and evaluate language models that reason and call a search engine with RL."""

__version__ = "0.1.0"
