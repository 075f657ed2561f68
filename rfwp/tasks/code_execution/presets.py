"""The paper's configurations of the algorithmic tasks."""
from rfwp.models import ModelConfig

# RFWP Sec. 4.2 and Appendix B: code execution and sequential ListOps share this architecture;
# the LSTM baseline has one layer of 256 and an input embedding of 128 (405 K parameters).
CODE_EXECUTION = ModelConfig(d_model=256, n_layers=4, n_heads=16, d_ff=1024, dropout=0.1,
                             lstm_hidden=256, lstm_layers=1, lstm_embedding=128)
