"""The exercise's baselines are framework-neutral: the same classes as mlx_rnn.baselines."""

from mlx_rnn.baselines import FrequencyBasedClassifier, UniformLanguageModel

__all__ = ["FrequencyBasedClassifier", "UniformLanguageModel"]
