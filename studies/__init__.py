"""fdsl.studies: the studies behind fdsl, each a folder of ordinary train-classifier runs."""
