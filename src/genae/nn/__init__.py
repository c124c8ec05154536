"""Building blocks shared by every model: networks, likelihoods, divergences."""
