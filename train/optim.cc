#include "train/optim.h"

#include <torch/torch.h>

#include <functional>
#include <map>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "core/registry.h"

namespace holo::train {
namespace {

/// The key of a parameter's state in torch::optim: its TensorImpl's address, printed as a string
/// up to LibTorch 2.x's later releases and the pointer itself since.
using StateKey = std::decay_t<decltype(std::declval<const torch::optim::Optimizer&>().state())>::key_type;

template <class Key = StateKey>
Key key_of(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

using StateMap = std::map<std::string, torch::Tensor>;

}  // namespace

/// One optim.name: how it is built over the two parameter groups (with and without weight
/// decay), and how one parameter's state is written to and read from named buffers.
struct OptimiserKind {
  std::function<std::unique_ptr<torch::optim::Optimizer>(const OptimOptions&, std::vector<torch::Tensor> decay,
                                                         std::vector<torch::Tensor> no_decay)>
      make;
  std::function<void(const torch::optim::OptimizerParamState&, const std::string& prefix, NamedTensors& out)> save;
  std::function<std::unique_ptr<torch::optim::OptimizerParamState>(
      const StateMap& buffers, const std::function<torch::Tensor(const torch::Tensor&)>& to_param)>
      load;
};

namespace {

/// The two groups of `Options` (the second without weight decay), the empty ones left out.
template <class Options>
std::vector<torch::optim::OptimizerParamGroup> param_groups(const Options& base, std::vector<torch::Tensor> decay,
                                                            std::vector<torch::Tensor> no_decay) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(std::move(decay), std::make_unique<Options>(base));
  auto nd = base;
  nd.weight_decay(0);
  if (!no_decay.empty()) groups.emplace_back(std::move(no_decay), std::make_unique<Options>(nd));
  return groups;
}

OptimiserKind sgd() {
  OptimiserKind k;
  k.make = [](const OptimOptions& o, std::vector<torch::Tensor> decay, std::vector<torch::Tensor> no_decay) {
    auto base = torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov && o.momentum > 0).weight_decay(o.weight_decay);
    return std::unique_ptr<torch::optim::Optimizer>(
        std::make_unique<torch::optim::SGD>(param_groups(base, std::move(decay), std::move(no_decay)), base));
  };
  k.save = [](const torch::optim::OptimizerParamState& state, const std::string& prefix, NamedTensors& out) {
    const auto& s = static_cast<const torch::optim::SGDParamState&>(state);
    if (s.momentum_buffer().defined()) out.emplace_back(prefix + "momentum_buffer", s.momentum_buffer());
  };
  k.load = [](const StateMap& buffers, const std::function<torch::Tensor(const torch::Tensor&)>& to_param) {
    auto s = std::make_unique<torch::optim::SGDParamState>();
    s->momentum_buffer(to_param(buffers.at("momentum_buffer")));
    return std::unique_ptr<torch::optim::OptimizerParamState>(std::move(s));
  };
  return k;
}

OptimiserKind adamw() {
  OptimiserKind k;
  k.make = [](const OptimOptions& o, std::vector<torch::Tensor> decay, std::vector<torch::Tensor> no_decay) {
    auto base = torch::optim::AdamWOptions(o.lr).betas({o.betas.at(0), o.betas.at(1)}).eps(o.eps).weight_decay(o.weight_decay);
    return std::unique_ptr<torch::optim::Optimizer>(
        std::make_unique<torch::optim::AdamW>(param_groups(base, std::move(decay), std::move(no_decay)), base));
  };
  k.save = [](const torch::optim::OptimizerParamState& state, const std::string& prefix, NamedTensors& out) {
    const auto& s = static_cast<const torch::optim::AdamWParamState&>(state);
    out.emplace_back(prefix + "step", torch::tensor(s.step(), torch::kInt64));
    out.emplace_back(prefix + "exp_avg", s.exp_avg());
    out.emplace_back(prefix + "exp_avg_sq", s.exp_avg_sq());
  };
  k.load = [](const StateMap& buffers, const std::function<torch::Tensor(const torch::Tensor&)>& to_param) {
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(buffers.at("step").item<int64_t>());
    s->exp_avg(to_param(buffers.at("exp_avg")));
    s->exp_avg_sq(to_param(buffers.at("exp_avg_sq")));
    return std::unique_ptr<torch::optim::OptimizerParamState>(std::move(s));
  };
  return k;
}

const Registry<OptimiserKind>& optimisers() {
  static const Registry<OptimiserKind> registry = [] {
    Registry<OptimiserKind> r("optim.name", "optimiser");
    r.add("sgd", "SGD with momentum (optim.momentum) and Nesterov momentum (optim.nesterov)", sgd());
    r.add("adamw", "AdamW (optim.betas, optim.eps), weight decay decoupled", adamw());
    return r;
  }();
  return registry;
}

}  // namespace

void register_optimisers() { optimisers(); }

Optimizer::Optimizer(const OptimOptions& options, const NamedTensors& params)
    : options_(options) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    params_.emplace_back(name, p);
    if (p.dim() <= 1 && !options.decay_norm_bias) {
      no_decay.push_back(p);
    } else {
      decay.push_back(p);
    }
  }
  HOLO_CHECK(!params_.empty(), std::string("the optimiser has no trainable parameters"));
  kind_ = &optimisers().at(options.name);
  optimizer_ = kind_->make(options, std::move(decay), std::move(no_decay));
}

void Optimizer::set_lr(double lr) {
  for (auto& g : optimizer_->param_groups()) g.options().set_lr(lr);
}

double Optimizer::lr() const { return optimizer_->param_groups().front().options().get_lr(); }

NamedTensors Optimizer::state() const {
  NamedTensors out;
  const auto& st = optimizer_->state();
  for (const auto& [name, p] : params_) {
    auto it = st.find(key_of(p));
    if (it == st.end()) continue;
    const std::string prefix = "optim." + name + ".";
    kind_->save(*it->second, prefix, out);
  }
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& state) {
  std::map<std::string, torch::Tensor> by_name(params_.begin(), params_.end());
  std::map<std::string, std::map<std::string, torch::Tensor>> grouped;
  for (const auto& [full, t] : state) {
    if (full.rfind("optim.", 0) != 0) continue;
    const auto dot = full.rfind('.');
    const std::string param = full.substr(6, dot - 6);
    if (!by_name.count(param)) {
      throw Error("checkpoint has optimiser state for '" + param +
                  "', which is not a trainable parameter of this model");
    }
    grouped[param][full.substr(dot + 1)] = t;
  }
  auto& st = optimizer_->state();
  for (auto& [param, buffers] : grouped) {
    const torch::Tensor& p = by_name.at(param);
    auto to_p = [&](const torch::Tensor& t) { return t.to(p.device(), p.scalar_type()).clone(); };
    st[key_of(p)] = kind_->load(buffers, to_p);
  }
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& [n, p] : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  torch::Tensor total = torch::zeros({}, grads.front().options().dtype(torch::kFloat64));
  for (const auto& g : grads) total += g.to(torch::kFloat64).pow(2).sum();
  const double norm = std::sqrt(total.item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& g : grads) g.mul_(scale);
  }
  return norm;
}

}  // namespace holo::train
