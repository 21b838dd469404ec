"""The trainer's loop: the review inbox of real messages the bot got wrong, fixes written back to the training
data, and model versions trained, compared, activated and rolled back without downtime."""
