// The delivery page encrypts the file for the vault key before sending it.
