"""Atari Pong from pixels with an STPN agent: environment, RAM expert, agent, training, evaluation."""
