"""Many boxes: campaigns that size themselves to a time budget and keep
everything on disk (campaign.py), and a merge of many boxes' campaign
directories into one table by CPU model, microcode and kernel (merge.py)."""
