"""The paper's configurations of the Atari agents' fast weight cores."""
from rfwp.models import ModelConfig

# RFWP Sec. 4.4 and original-code.md §5: the fast weight core replacing the LSTM(256) of IMPALA's large
# net (the ResNet features plus clipped reward, 257 numbers per step, are the d_input). ATARI_LARGE's
# d_ff is not stated in the paper; 512 (the small one's) gives the agent Table 3's 3.4 M parameters (1024: 4.4 M).
ATARI_SMALL = ModelConfig(d_model=128, n_layers=2, n_heads=4, d_ff=512, dropout=0.0, lstm_hidden=256)
ATARI_LARGE = ModelConfig(d_model=256, n_layers=4, n_heads=8, d_ff=512, dropout=0.0, lstm_hidden=256)
