"""Engine: numpy + numba only. Codes, feature subsets, the k-d tree set index, decision branches."""
