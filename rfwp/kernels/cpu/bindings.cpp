// Python bindings of the CPU kernels; rfwp/ops/compiled.py wraps each forward/backward pair in an
// autograd Function.
#include <torch/extension.h>

#include "delta_memory.h"

namespace rfwp {
std::vector<Tensor> delta_rule_forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor W0,
                                       std::optional<Tensor> reset, bool save);
std::vector<Tensor> delta_rule_backward(Tensor q, Tensor k, Tensor v, Tensor beta, std::optional<Tensor> reset,
                                        Tensor checkpoints, Tensor d_out, Tensor d_W);
std::vector<Tensor> delta_rnn_forward(Tensor z, Tensor rk, Tensor rv, Tensor rbeta, Tensor R0, Tensor y0,
                                      std::optional<Tensor> reset, std::string version, bool save);
std::vector<Tensor> delta_rnn_backward(Tensor rk, Tensor rv, Tensor rbeta, std::optional<Tensor> reset,
                                       Tensor checkpoints, Tensor queries, Tensor out, std::string version,
                                       Tensor d_out, Tensor d_R, Tensor d_y);
std::vector<Tensor> delta_lstm_forward(Tensor z, Tensor rk, Tensor rv, Tensor rbeta, Tensor R0, Tensor c0,
                                       Tensor y0, std::optional<Tensor> reset, std::string version, bool save);
std::vector<Tensor> delta_lstm_backward(Tensor rk, Tensor rv, Tensor rbeta, Tensor c0, std::optional<Tensor> reset,
                                        Tensor checkpoints, Tensor record, Tensor out, std::string version,
                                        Tensor d_out, Tensor d_R, Tensor d_c, Tensor d_y);
std::vector<Tensor> recurrent_delta_net_forward(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor Rq, Tensor Rk,
                                                Tensor Rv, Tensor rbeta, Tensor W0, Tensor y0,
                                                std::optional<Tensor> reset, std::string key_map, bool save);
std::vector<Tensor> recurrent_delta_net_backward(Tensor Rq, Tensor Rk, Tensor Rv, Tensor rbeta, Tensor y0,
                                                 std::optional<Tensor> reset, std::string key_map, Tensor out,
                                                 Tensor checkpoints, Tensor rq, Tensor rk, Tensor rv, Tensor rb,
                                                 Tensor norms, Tensor d_out, Tensor d_W, Tensor d_y);
}  // namespace rfwp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("delta_rule_forward", &rfwp::delta_rule_forward);
  m.def("delta_rule_backward", &rfwp::delta_rule_backward);
  m.def("delta_rnn_forward", &rfwp::delta_rnn_forward);
  m.def("delta_rnn_backward", &rfwp::delta_rnn_backward);
  m.def("delta_lstm_forward", &rfwp::delta_lstm_forward);
  m.def("delta_lstm_backward", &rfwp::delta_lstm_backward);
  m.def("recurrent_delta_net_forward", &rfwp::recurrent_delta_net_forward);
  m.def("recurrent_delta_net_backward", &rfwp::recurrent_delta_net_backward);
}
