"""jetsched timer: owns future time — delayed starts and retry backoffs — on a hierarchical timing wheel."""
