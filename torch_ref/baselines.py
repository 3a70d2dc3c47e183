"""The exercise's baselines are framework-neutral: the same classes as mlx_rnn.core.baselines."""

from mlx_rnn.core.baselines import FrequencyBasedClassifier, UniformLanguageModel

__all__ = ["FrequencyBasedClassifier", "UniformLanguageModel"]
