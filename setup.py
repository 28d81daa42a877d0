from setuptools import find_packages, setup

# This sdist is what the training service installs: the trainer only. TensorFlow comes
# with the executor image, so only what the trainer needs beyond it is listed.
setup(
    name="trainer",
    version="0.1.0",
    packages=find_packages(include=["trainer", "trainer.*"]),
    install_requires=["google-cloud-storage>=2.14", "cloudml-hypertune>=0.1.0.dev6"],
    description="Iris classifier trainer (example package for the Vertex AI CI/CD workflows)",
)
