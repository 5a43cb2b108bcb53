"""The controller: drives deployments to pods, rolls them, heals them, and watches node lifecycle."""
