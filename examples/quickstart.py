"""Build, fit and evaluate a VAE on the bundled digits in ten lines.

    python examples/quickstart.py [--epochs N]
"""

import argparse

import pyrovae

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=100)
args = parser.parse_args()

data = pyrovae.load_dataset("digits")                      # 1,797 8×8 digits, binarised
train, test = pyrovae.train_test_split(data, test_fraction=0.2, seed=0)
vae = pyrovae.VAE(data.data_dim, latent_dim=2, encoder=[128, 64], likelihood="bernoulli")
history = pyrovae.fit(vae, train, epochs=args.epochs, batch_size=128, lr=1e-3, seed=0,
                      test_data=test, progress=False)
result = pyrovae.evaluate(vae, test, num_samples=1000)
print(f"held-out ELBO {result['elbo']:.2f}, IWAE log p(x) {result['log_likelihood']:.2f} "
      f"± {result['log_likelihood_se']:.2f} nats/example after {len(history)} epochs")
