// The placement planner (src/plan): tensor roles from real files and synth presets, the
// default policy and llama.cpp's overrides on the full Qwen3.5-35B-A3B and Qwen3-30B-A3B
// shapes at 8-24 GiB budgets (no file is written: the presets' tensor lists are planned),
// budgets never exceeded, clear errors, size parsing, and the decode roofline against a
// hand computation.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"
#include "core/read_bandwidth.h"
#include "gguf/gguf_model_files.h"
#include "model/synth.h"
#include "plan/hardware.h"
#include "plan/memory.h"
#include "plan/planner.h"
#include "support/test_support.h"

namespace tandem::plan {
namespace {

constexpr uint64_t GiB = uint64_t{1} << 30;

const ModelSpec& spec_35b() {
  static const ModelSpec spec =
      model_spec(model::synth::find_preset("qwen35moe-35b-a3b"), model::synth::find_file_type("q4_k_m"));
  return spec;
}
const ModelSpec& spec_30b() {
  static const ModelSpec spec =
      model_spec(model::synth::find_preset("qwen3moe-30b-a3b"), model::synth::find_file_type("q4_k_m"));
  return spec;
}

PlanOptions options(uint64_t vram, uint64_t ram = 256 * GiB) {
  PlanOptions o;
  o.n_ctx = 4096;
  o.vram_budget = vram;
  o.ram_budget = ram;
  return o;
}

// Fails the test with the message when `fn` does not throw a tandem::Error containing `part`.
template <typename Fn>
void expect_error(Fn fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "message: " << e.what() << "\nexpected: " << part;
  }
}

uint64_t sum_bytes(const ModelSpec& spec, const Plan& plan, Device device, bool (*pick)(const TensorSpec&)) {
  uint64_t total = 0;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    if (plan.tensor_device[i] == device && pick(spec.tensors[i])) total += spec.tensors[i].bytes;
  }
  return total;
}

// The invariants every plan keeps: budget, totals that add up, whole expert layers.
void check_plan(const ModelSpec& spec, const Plan& plan) {
  ASSERT_EQ(plan.tensor_device.size(), spec.tensors.size());
  EXPECT_EQ(plan.vram_reserve, vram_reserve(plan.vram_budget));
  EXPECT_LE(plan.gpu.total(), plan.vram_usable);
  EXPECT_LE(plan.gpu.total() + plan.vram_reserve, std::max(plan.vram_budget, plan.vram_reserve));
  EXPECT_LE(plan.cpu.total(), plan.ram_budget);
  EXPECT_EQ(plan.gpu.weights + plan.cpu.weights, spec.weight_bytes());
  uint64_t kv = 0, state = 0;
  for (const Buffer& b : plan.buffers) {
    if (b.kind == BufferKind::kKvCache) kv += b.bytes;
    if (b.kind == BufferKind::kState) state += b.bytes;
  }
  EXPECT_EQ(plan.gpu.kv + plan.cpu.kv, kv);
  EXPECT_EQ(plan.gpu.state + plan.cpu.state, state);
  EXPECT_EQ(plan.gpu.scratch > 0, plan.gpu.weights + plan.gpu.kv + plan.gpu.state > 0);
  // A layer's routed experts are on one device (unless a rule split them).
  std::map<int64_t, std::set<Device>> expert_devices;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    if (spec.tensors[i].role == Role::kRoutedExperts && !plan.overridden[i]) expert_devices[spec.tensors[i].layer].insert(plan.tensor_device[i]);
  }
  for (const auto& [layer, devices] : expert_devices) EXPECT_EQ(devices.size(), 1u) << "layer " << layer;
}

// ---------------------------------------------------------------------------------------
// Roles and specs
// ---------------------------------------------------------------------------------------

TEST(ModelSpec, RolesOfTheQwen35MoeFixtureIncludingItsMtpBlock) {
  const auto path = std::filesystem::path(TANDEM_SOURCE_DIR) / "tests/fixtures/qwen35moe/model-q4_k_m.gguf";
  const gguf::ModelFiles files = gguf::ModelFiles::open(path);
  const ModelSpec spec = model_spec(files, path.string());
  ASSERT_EQ(spec.hp.n_layer, 4);
  ASSERT_EQ(spec.hp.n_nextn, 1);
  ASSERT_EQ(spec.tensors.size(), files.tensors().size());
  std::map<std::string, Role> role;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    EXPECT_EQ(spec.tensors[i].bytes, files.tensors()[i]->n_bytes);
    role[spec.tensors[i].name] = spec.tensors[i].role;
  }
  EXPECT_EQ(role["token_embd.weight"], Role::kTokenEmbedding);
  EXPECT_EQ(role["output.weight"], Role::kOutputHead);
  EXPECT_EQ(role["output_norm.weight"], Role::kOutputNorm);
  EXPECT_EQ(role["blk.0.attn_qkv.weight"], Role::kDeltaNet);
  EXPECT_EQ(role["blk.0.attn_gate.weight"], Role::kDeltaNet);
  EXPECT_EQ(role["blk.0.ssm_a"], Role::kDeltaNet);
  EXPECT_EQ(role["blk.0.ssm_conv1d.weight"], Role::kDeltaNet);
  EXPECT_EQ(role["blk.0.attn_norm.weight"], Role::kNorm);
  EXPECT_EQ(role["blk.0.post_attention_norm.weight"], Role::kNorm);
  EXPECT_EQ(role["blk.3.attn_q.weight"], Role::kAttention);
  EXPECT_EQ(role["blk.3.attn_output.weight"], Role::kAttention);
  EXPECT_EQ(role["blk.3.attn_k_norm.weight"], Role::kNorm);
  EXPECT_EQ(role["blk.0.ffn_gate_inp.weight"], Role::kRouter);
  EXPECT_EQ(role["blk.0.ffn_gate_inp_shexp.weight"], Role::kSharedExpert);
  EXPECT_EQ(role["blk.0.ffn_down_shexp.weight"], Role::kSharedExpert);
  EXPECT_EQ(role["blk.2.ffn_up_exps.weight"], Role::kRoutedExperts);
  EXPECT_EQ(role["blk.4.nextn.eh_proj.weight"], Role::kMtp);
  EXPECT_EQ(role["blk.4.ffn_up_exps.weight"], Role::kMtp);
  // KV only in full-attention layers; DeltaNet layers carry conv + recurrent state.
  const model::HParams& hp = spec.hp;
  EXPECT_EQ(layer_buffers(hp, 3, 100, {}).kv, 100u * 2 * (hp.n_head_kv * hp.head_dim * 2));
  EXPECT_EQ(layer_buffers(hp, 0, 100, {}).kv, 0u);
  const int64_t C = 2 * hp.ssm_n_k * hp.ssm_d_k + hp.ssm_n_v * hp.ssm_d_v;
  EXPECT_EQ(layer_buffers(hp, 0, 100, {}).state,
            static_cast<uint64_t>(((hp.ssm_conv_kernel - 1) * C + hp.ssm_n_v * hp.ssm_d_k * hp.ssm_d_v) * 4));
  EXPECT_EQ(layer_buffers(hp, 4, 100, {}).kv + layer_buffers(hp, 4, 100, {}).state, 0u);  // MTP: not run
  EXPECT_EQ(layer_buffers(hp, 4, 100, {}, /*mtp_runs=*/true).kv, layer_buffers(hp, 3, 100, {}).kv);  // a full-attention layer
  EXPECT_EQ(layer_buffers(hp, 4, 100, {}, true).state, 0u);
  EXPECT_EQ(layer_buffers(hp, 5, 100, {}, true).kv, 0u);  // past the blocks
  // q8_0: 34 bytes per 32 values.
  EXPECT_EQ(kv_bytes_per_token(hp, {DType::Q8_0, DType::Q8_0}), 2u * hp.n_head_kv * hp.head_dim / 32 * 34);
  EXPECT_EQ(layer_of("blk.12.attn_q.weight"), 12);
  EXPECT_EQ(layer_of("blk.x.attn_q.weight"), -1);
  EXPECT_EQ(layer_of("output.weight"), -1);
}

TEST(ModelSpec, PresetListMatchesTheFileSynthWrites) {
  model::synth::Preset p = model::synth::find_preset("qwen35moe-35b-a3b");
  p.n_layer = 4, p.n_embd = 256, p.n_head = 4, p.n_head_kv = 2, p.head_dim = 64, p.n_rot = 16;
  p.n_vocab = 1024, p.n_expert = 16, p.n_expert_used = 4, p.n_ff_expert = 256, p.n_ff_shared = 256;
  p.ssm_n_k = 2, p.ssm_n_v = 4, p.ssm_d_state = 64, p.rope_sections = {3, 3, 2, 0};
  const auto path = testing::scratch_dir("plan_preset") / "tiny.gguf";
  model::synth::Options o;
  o.preset = p;
  model::synth::write(path, o);
  const ModelSpec from_file = model_spec(gguf::ModelFiles::open(path), path.string());
  const ModelSpec from_preset = model_spec(p, model::synth::find_file_type("q4_k_m"));
  ASSERT_EQ(from_file.tensors.size(), from_preset.tensors.size());
  for (size_t i = 0; i < from_file.tensors.size(); ++i) {
    const TensorSpec &a = from_file.tensors[i], &b = from_preset.tensors[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
    EXPECT_EQ(a.dims, b.dims) << a.name;
    EXPECT_EQ(a.bytes, b.bytes) << a.name;
    EXPECT_EQ(a.role, b.role) << a.name;
  }
  const model::HParams &x = from_file.hp, &y = from_preset.hp;
  EXPECT_EQ(x.arch, y.arch);
  EXPECT_EQ(std::tuple(x.n_layer, x.n_embd, x.n_head, x.n_head_kv, x.head_dim, x.n_rot, x.n_ff, x.n_vocab),
            std::tuple(y.n_layer, y.n_embd, y.n_head, y.n_head_kv, y.head_dim, y.n_rot, y.n_ff, y.n_vocab));
  EXPECT_EQ(std::tuple(x.n_expert, x.n_expert_used, x.n_ff_expert, x.n_ff_shared, x.n_nextn),
            std::tuple(y.n_expert, y.n_expert_used, y.n_ff_expert, y.n_ff_shared, y.n_nextn));
  EXPECT_EQ(std::tuple(x.full_attention_interval, x.ssm_conv_kernel, x.ssm_n_k, x.ssm_n_v, x.ssm_d_k, x.ssm_d_v),
            std::tuple(y.full_attention_interval, y.ssm_conv_kernel, y.ssm_n_k, y.ssm_n_v, y.ssm_d_k, y.ssm_d_v));
  EXPECT_EQ(x.n_ctx_train, y.n_ctx_train);
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------------------
// The default policy on the real shapes
// ---------------------------------------------------------------------------------------

bool is_every_token(const TensorSpec& t) { return every_token(t.role); }
bool is_expert(const TensorSpec& t) { return t.role == Role::kRoutedExperts; }

TEST(Planner, DefaultAtEachBudgetKeepsTheInvariants) {
  for (const ModelSpec* spec : {&spec_35b(), &spec_30b()}) {
    uint64_t last_gpu = 0;
    double last_cpu_bytes = 1e30;
    for (const uint64_t budget : {8 * GiB, 12 * GiB, 16 * GiB, 24 * GiB}) {
      SCOPED_TRACE(spec->name + " at " + format_size(budget));
      const Plan plan = make_plan(*spec, options(budget));
      check_plan(*spec, plan);
      // Every-token weights, KV and state all on the GPU at every one of these budgets.
      EXPECT_EQ(sum_bytes(*spec, plan, Device::Cpu, is_every_token), 0u);
      EXPECT_EQ(plan.cpu.kv + plan.cpu.state, 0u);
      // The token embedding stays on the CPU.
      for (size_t i = 0; i < spec->tensors.size(); ++i) {
        if (spec->tensors[i].role == Role::kTokenEmbedding) { EXPECT_EQ(plan.tensor_device[i], Device::Cpu); }
      }
      // More budget: more on the GPU, fewer bytes per token on the CPU.
      EXPECT_GT(plan.gpu.total(), last_gpu);
      const double cpu_bytes = predict_decode(*spec, plan, 0, 50.0, 1000.0).cpu_bytes;
      EXPECT_LT(cpu_bytes, last_cpu_bytes);
      last_gpu = plan.gpu.total(), last_cpu_bytes = cpu_bytes;
    }
  }
}

TEST(Planner, TwelveGiBFor35bA3bHoldsAllEveryTokenWeightsThenWholeExpertLayers) {
  const ModelSpec& spec = spec_35b();
  const Plan plan = make_plan(spec, options(12 * GiB));
  check_plan(spec, plan);
  EXPECT_EQ(plan.vram_usable, 12 * GiB - (12 * GiB / 20 + (uint64_t{256} << 20)));
  EXPECT_EQ(sum_bytes(spec, plan, Device::Cpu, is_every_token), 0u);
  EXPECT_GT(sum_bytes(spec, plan, Device::Cuda, is_every_token), 0u);
  // The rest is routed experts, whole layers, as many as fit: the smallest layer left on
  // the CPU would not fit in what is left.
  std::map<int64_t, uint64_t> layer_bytes;
  std::map<int64_t, Device> layer_device;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    if (!is_expert(spec.tensors[i])) continue;
    layer_bytes[spec.tensors[i].layer] += spec.tensors[i].bytes;
    layer_device[spec.tensors[i].layer] = plan.tensor_device[i];
  }
  uint64_t smallest_cpu_layer = UINT64_MAX;
  int gpu_layers = 0;
  for (const auto& [layer, bytes] : layer_bytes) {
    if (layer_device[layer] == Device::Cpu) smallest_cpu_layer = std::min(smallest_cpu_layer, bytes);
    gpu_layers += layer_device[layer] == Device::Cuda;
  }
  EXPECT_GT(plan.vram_usable - plan.gpu.total(), 0u);
  EXPECT_LT(plan.vram_usable - plan.gpu.total(), smallest_cpu_layer);
  EXPECT_GE(gpu_layers, 20);
  // Last layers first: layer 39's experts are on the GPU, layer 0's are not.
  EXPECT_EQ(layer_device[39], Device::Cuda);
  EXPECT_EQ(layer_device[0], Device::Cpu);
}

// Expert streaming's GPU buffer (two slabs, backend.h): auto takes it only from room the
// experts leave (down to two experts' worth), so the tensors' placement, and with it decode,
// is exactly that of --expert-streaming off; on sets the full buffer aside first and may
// displace experts; either way the budget holds and the buffer exists only with CPU experts
// under GPU layers.
// The least buffer the planner grants must stream on the device, whose slabs start on
// 256-byte boundaries: two experts' bytes are not enough when an expert is not a multiple
// of 256 (1408: Q5_0 experts of 64 x 32).
TEST(Planner, ExpertSlabsHoldWhatTheLeastBufferPromises) {
  for (const uint64_t expert : {uint64_t{1408}, uint64_t{256}, uint64_t{3 << 20} + 1}) {
    SCOPED_TRACE(expert);
    const uint64_t least = expert_stream_least_bytes(expert);
    EXPECT_EQ(experts_per_slab(least, expert, 8), 1);
    EXPECT_LE(expert, expert_slab_bytes(least));
    EXPECT_EQ(expert_slab_bytes(least) % kExpertSlabAlign, 0u);
    const uint64_t want = expert_stream_bytes(expert, 8);
    EXPECT_EQ(experts_per_slab(want, expert, 8), std::min<int64_t>(8, static_cast<int64_t>(kExpertSlabBytes / expert)));
  }
  EXPECT_EQ(experts_per_slab(2 * 1408, 1408, 8), 0) << "two experts' bytes, but 1280-byte slabs";
}

TEST(Planner, ExpertStreamingBufferCostsDecodeNothingUnlessAskedFor) {
  using Mode = model::ExpertStreaming::Mode;
  for (const ModelSpec* spec : {&spec_35b(), &spec_30b()}) {
    // What a buffer wants (two full slabs of the largest stack) and the least it works with.
    uint64_t want = 0, least = 0;
    for (const TensorSpec& t : spec->tensors) {
      if (!is_expert(t)) continue;
      const uint64_t expert = t.bytes / static_cast<uint64_t>(t.dims[2]);
      want = std::max(want, expert_stream_bytes(expert, t.dims[2]));
      least = std::max(least, expert_stream_least_bytes(expert));
    }
    ASSERT_GT(least, 0u);
    EXPECT_LE(want, 2 * kExpertSlabBytes);
    int with_buffer = 0;
    for (const uint64_t budget : {8 * GiB, 12 * GiB, 16 * GiB, 24 * GiB, 40 * GiB}) {
      SCOPED_TRACE(spec->name + " at " + format_size(budget));
      std::map<Mode, Plan> plans;
      for (const Mode mode : {Mode::kOff, Mode::kAuto, Mode::kOn}) {
        PlanOptions o = options(budget);
        o.expert_streaming = mode;
        plans[mode] = make_plan(*spec, o);
        check_plan(*spec, plans[mode]);
      }
      const Plan& off = plans[Mode::kOff];
      const bool cpu_experts = sum_bytes(*spec, off, Device::Cpu, is_expert) > 0;
      const uint64_t left = off.vram_usable - off.gpu.total();
      EXPECT_EQ(off.expert_stream_bytes, 0u);
      EXPECT_EQ(plans[Mode::kAuto].tensor_device, off.tensor_device) << "auto moved a tensor";
      EXPECT_LE(plans[Mode::kAuto].expert_stream_bytes, left);
      for (const Mode mode : {Mode::kAuto, Mode::kOn}) {
        const Plan& p = plans[mode];
        uint64_t listed = 0;
        for (const Buffer& b : p.buffers) listed += b.kind == BufferKind::kExpertStream ? b.bytes : 0;
        EXPECT_EQ(listed, p.expert_stream_bytes);
        EXPECT_LE(p.expert_stream_bytes, want);
        EXPECT_EQ(execution_placement(*spec, p).expert_streaming, p.expert_stream_bytes > 0);
        if (!cpu_experts) {
          EXPECT_EQ(p.expert_stream_bytes, 0u) << "no CPU experts to stream";
        }
      }
      if (cpu_experts) {
        EXPECT_GE(plans[Mode::kOn].expert_stream_bytes, least) << "on always gets its buffer";
        EXPECT_GE(sum_bytes(*spec, plans[Mode::kOn], Device::Cpu, is_expert), sum_bytes(*spec, off, Device::Cpu, is_expert));
        if (left >= least) {
          EXPECT_GT(plans[Mode::kAuto].expert_stream_bytes, 0u) << left << " bytes were left";
        }
        with_buffer += plans[Mode::kAuto].expert_stream_bytes > 0;
      }
    }
    EXPECT_GT(with_buffer, 0) << "auto never found room: the feature would be dead by default";
  }
}

TEST(Planner, SmallBudgetsStillNeverExceeded) {
  for (const uint64_t budget : {uint64_t{0}, uint64_t{200} << 20, GiB, 2 * GiB}) {
    const Plan plan = make_plan(spec_35b(), options(budget));
    check_plan(spec_35b(), plan);
  }
  const Plan none = make_plan(spec_35b(), options(0));
  EXPECT_EQ(none.gpu.total(), 0u);
  EXPECT_EQ(none.vram_usable, 0u);
}

// ---------------------------------------------------------------------------------------
// Overrides
// ---------------------------------------------------------------------------------------

TEST(Planner, CpuMoeMovesEveryRoutedExpertAndNothingElse) {
  for (const bool ngl99 : {false, true}) {
    PlanOptions o = options(12 * GiB);
    o.cpu_moe = true;
    if (ngl99) o.n_gpu_layers = 99;
    const Plan plan = make_plan(spec_35b(), o);
    check_plan(spec_35b(), plan);
    for (size_t i = 0; i < spec_35b().tensors.size(); ++i) {
      const TensorSpec& t = spec_35b().tensors[i];
      EXPECT_EQ(plan.overridden[i], is_expert(t)) << t.name;
      const Device want = is_expert(t) || t.role == Role::kTokenEmbedding ? Device::Cpu : Device::Cuda;
      EXPECT_EQ(plan.tensor_device[i], want) << t.name;
    }
    EXPECT_EQ(plan.cpu.kv + plan.cpu.state, 0u);
  }
}

TEST(Planner, NCpuMoeKeepsTheFirstLayersExpertsOnTheCpu) {
  PlanOptions o = options(12 * GiB);
  o.n_gpu_layers = 99, o.n_cpu_moe = 25;
  const Plan plan = make_plan(spec_35b(), o);
  check_plan(spec_35b(), plan);
  for (size_t i = 0; i < spec_35b().tensors.size(); ++i) {
    const TensorSpec& t = spec_35b().tensors[i];
    if (is_expert(t)) { EXPECT_EQ(plan.tensor_device[i], t.layer < 25 ? Device::Cpu : Device::Cuda) << t.name; }
  }
  // With the default policy the first N are pinned and the rest filled as usual.
  o.n_gpu_layers.reset(), o.n_cpu_moe = 5;
  const Plan autoplan = make_plan(spec_35b(), o);
  check_plan(spec_35b(), autoplan);
  for (size_t i = 0; i < spec_35b().tensors.size(); ++i) {
    const TensorSpec& t = spec_35b().tensors[i];
    if (is_expert(t) && t.layer < 5) { EXPECT_EQ(autoplan.tensor_device[i], Device::Cpu) << t.name; }
    if (is_expert(t) && t.layer >= 30) { EXPECT_EQ(autoplan.tensor_device[i], Device::Cuda) << t.name; }
  }
  // Too many experts for the budget: a clear error with the excess.
  o.n_gpu_layers = 99, o.n_cpu_moe = 10;
  expect_error([&] { make_plan(spec_35b(), o); }, "over budget");
}

TEST(Planner, NglCountsLayersFromTheEndWithTheOutputHeadLast) {
  const ModelSpec& spec = spec_35b();  // 40 blocks + the head = 41 slots
  for (const int64_t ngl : {0, 1, 10, 20}) {
    PlanOptions o = options(12 * GiB);
    o.n_gpu_layers = ngl;
    const Plan plan = make_plan(spec, o);
    check_plan(spec, plan);
    const int64_t first_gpu_layer = 41 - ngl;
    for (size_t i = 0; i < spec.tensors.size(); ++i) {
      const TensorSpec& t = spec.tensors[i];
      Device want = Device::Cpu;
      if (t.layer >= 0) want = t.layer >= first_gpu_layer ? Device::Cuda : Device::Cpu;
      if (t.role == Role::kOutputHead || t.role == Role::kOutputNorm) want = ngl >= 1 ? Device::Cuda : Device::Cpu;
      EXPECT_EQ(plan.tensor_device[i], want) << t.name << " at -ngl " << ngl;
    }
    for (const Buffer& b : plan.buffers) {
      if (b.layer >= 0) { EXPECT_EQ(b.device, b.layer >= first_gpu_layer ? Device::Cuda : Device::Cpu); }
    }
    if (ngl == 0) { EXPECT_EQ(plan.gpu.total(), 0u); }
  }
  // -ngl 99 wants everything but the embedding on the GPU: over a 12 GiB budget by exactly
  // weights + buffers + scratch - usable.
  PlanOptions o = options(12 * GiB);
  o.n_gpu_layers = 99;
  const Plan cpu_only = make_plan(spec, options(0));
  uint64_t embd = 0;
  for (const TensorSpec& t : spec.tensors) embd += t.role == Role::kTokenEmbedding ? t.bytes : 0;
  const uint64_t need = spec.weight_bytes() - embd + cpu_only.cpu.kv + cpu_only.cpu.state + cpu_only.cpu.scratch;
  const uint64_t usable = 12 * GiB - vram_reserve(12 * GiB);
  expect_error([&] { make_plan(spec, o); }, format_size(need - usable) + " over budget");
  o.policy = Policy::kLayers;
  expect_error([&] { make_plan(spec, o); }, "give one of them");
  o.policy = Policy::kAuto, o.n_gpu_layers = -1;
  expect_error([&] { make_plan(spec, o); }, "-ngl must be >= 0");
}

TEST(Planner, TensorOverridesFirstMatchWins) {
  const ModelSpec& spec = spec_35b();
  const auto device_of = [&](const Plan& plan, const std::string& name) {
    for (size_t i = 0; i < spec.tensors.size(); ++i) {
      if (spec.tensors[i].name == name) return plan.tensor_device[i];
    }
    ADD_FAILURE() << "no tensor " << name;
    return Device::Cpu;
  };
  PlanOptions o = options(12 * GiB);
  o.overrides = parse_tensor_overrides(R"(blk\.0\.ffn_up_exps=CUDA0)");
  for (auto& r : parse_tensor_overrides(R"(ffn_.*_exps=CPU)")) o.overrides.push_back(std::move(r));
  Plan plan = make_plan(spec, o);
  check_plan(spec, plan);
  EXPECT_EQ(device_of(plan, "blk.0.ffn_up_exps.weight"), Device::Cuda);
  EXPECT_EQ(device_of(plan, "blk.0.ffn_gate_exps.weight"), Device::Cpu);
  EXPECT_EQ(device_of(plan, "blk.39.ffn_up_exps.weight"), Device::Cpu);
  EXPECT_EQ(device_of(plan, "blk.39.attn_q.weight"), Device::Cuda);  // not matched: the policy's
  // The same two rules the other way round: the broad one matches first.
  o.overrides = parse_tensor_overrides(R"(ffn_.*_exps=CPU,blk\.0\.ffn_up_exps=CUDA0)");
  ASSERT_EQ(o.overrides.size(), 2u);
  plan = make_plan(spec, o);
  EXPECT_EQ(device_of(plan, "blk.0.ffn_up_exps.weight"), Device::Cpu);
  // -ot rules come before --cpu-moe.
  o.overrides = parse_tensor_overrides(R"(blk\.39\.ffn_(up|gate|down)_exps=cuda0)");
  o.cpu_moe = true;
  plan = make_plan(spec, o);
  EXPECT_EQ(device_of(plan, "blk.39.ffn_down_exps.weight"), Device::Cuda);
  EXPECT_EQ(device_of(plan, "blk.38.ffn_down_exps.weight"), Device::Cpu);
  // A rule may move every-token weights to the CPU; its KV cache follows the attention.
  o = options(12 * GiB);
  o.overrides = parse_tensor_overrides(R"(blk\.3\.attn=CPU)");
  plan = make_plan(spec, o);
  EXPECT_EQ(device_of(plan, "blk.3.attn_q.weight"), Device::Cpu);
  for (const Buffer& b : plan.buffers) {
    if (b.kind == BufferKind::kKvCache) { EXPECT_EQ(b.device, b.layer == 3 ? Device::Cpu : Device::Cuda); }
  }
  // Demanding more than the budget is an error, not a quiet overrun.
  o.overrides = parse_tensor_overrides("exps=CUDA0");
  expect_error([&] { make_plan(spec, o); }, "over budget");
}

TEST(Planner, TensorOverrideParsingErrors) {
  expect_error([] { parse_tensor_overrides(R"(blk\.(=CPU)"); }, "bad regular expression 'blk\\.('");
  expect_error([] { parse_tensor_overrides("exps=GPU0"); }, "unknown device 'GPU0'");
  expect_error([] { parse_tensor_overrides("exps=CUDA1"); }, "unknown device 'CUDA1'");
  expect_error([] { parse_tensor_overrides("exps"); }, "expected REGEX=DEVICE");
  expect_error([] { parse_tensor_overrides("=CPU"); }, "expected REGEX=DEVICE");
  expect_error([] { parse_tensor_overrides("a=CPU,"); }, "expected REGEX=DEVICE");
  expect_error([] { parse_policy("greedy"); }, "--placement 'greedy'");
  EXPECT_EQ(parse_tensor_overrides("a=cpu")[0].device, Device::Cpu);
  EXPECT_EQ(parse_tensor_overrides("a=Cuda0")[0].device, Device::Cuda);
  PlanOptions o = options(12 * GiB);
  o.n_cpu_moe = -1;
  expect_error([&] { make_plan(spec_35b(), o); }, "--n-cpu-moe must be >= 0");
  o = options(12 * GiB);
  o.n_ctx = 0;
  expect_error([&] { make_plan(spec_35b(), o); }, "context size");
}

TEST(Planner, LayerSplitIsAContiguousPrefix) {
  for (const ModelSpec* spec : {&spec_35b(), &spec_30b()}) {
    for (const uint64_t budget : {8 * GiB, 12 * GiB, 16 * GiB, 24 * GiB}) {
      SCOPED_TRACE(spec->name + " at " + format_size(budget));
      PlanOptions o = options(budget);
      o.policy = Policy::kLayers;
      const Plan plan = make_plan(*spec, o);
      check_plan(*spec, plan);
      // The GPU holds blocks 0..k-1 whole (tensors and buffers), nothing after them; the
      // output head only when every block is there too.
      int64_t k = 0;
      while (k < spec->n_blocks()) {
        bool all = true;
        for (size_t i = 0; i < spec->tensors.size(); ++i) {
          if (spec->tensors[i].layer == k) all = all && plan.tensor_device[i] == Device::Cuda;
        }
        if (!all) break;
        ++k;
      }
      EXPECT_GT(k, 0);
      for (size_t i = 0; i < spec->tensors.size(); ++i) {
        const TensorSpec& t = spec->tensors[i];
        if (t.layer >= k || t.role == Role::kTokenEmbedding) { EXPECT_EQ(plan.tensor_device[i], Device::Cpu) << t.name; }
        if ((t.role == Role::kOutputHead) && k < spec->n_blocks()) { EXPECT_EQ(plan.tensor_device[i], Device::Cpu); }
      }
      for (const Buffer& b : plan.buffers) {
        if (b.layer >= 0) { EXPECT_EQ(b.device, b.layer < k ? Device::Cuda : Device::Cpu); }
      }
      // And the next block would not have fitted.
      uint64_t next = 0;
      for (const TensorSpec& t : spec->tensors) next += t.layer == k ? t.bytes : 0;
      for (const Buffer& b : plan.buffers) next += b.layer == k ? b.bytes : 0;
      if (k < spec->n_blocks()) { EXPECT_GT(plan.gpu.total() + next, plan.vram_usable); }
    }
  }
}

TEST(Planner, TooLittleMemorySaysHowMuchIsMissing) {
  const ModelSpec& spec = spec_35b();
  PlanOptions o = options(8 * GiB, 256 * GiB);
  const Plan fits = make_plan(spec, o);
  o.ram_budget = 4 * GiB;
  expect_error([&] { make_plan(spec, o); }, format_size(fits.cpu.total() - 4 * GiB) + " missing");
  expect_error([&] { make_plan(spec, o); }, "does not fit");
  // No GPU at all: the whole model must be in RAM.
  o = options(0, 16 * GiB);
  const Plan cpu_only = make_plan(spec, options(0));
  expect_error([&] { make_plan(spec, o); }, format_size(cpu_only.cpu.total() - 16 * GiB) + " missing");
}

TEST(Planner, ExecutionPlacementPerLayer) {
  const ModelSpec& spec = spec_35b();
  const ExecutionPlacement dflt = execution_placement(spec, make_plan(spec, options(12 * GiB)));
  ASSERT_EQ(dflt.layers.size(), 40u);
  EXPECT_EQ(dflt.output, Device::Cuda);
  for (size_t l = 0; l < 40; ++l) EXPECT_EQ(dflt.layers[l].main, Device::Cuda);
  EXPECT_EQ(dflt.layers[39].experts, Device::Cuda);
  EXPECT_EQ(dflt.layers[0].experts, Device::Cpu);
  PlanOptions o = options(12 * GiB);
  o.policy = Policy::kLayers;
  const ExecutionPlacement split = execution_placement(spec, make_plan(spec, o));
  EXPECT_EQ(split.output, Device::Cpu);
  EXPECT_EQ(split.layers[0].main, Device::Cuda);
  EXPECT_EQ(split.layers[0].experts, Device::Cuda);
  EXPECT_EQ(split.layers[39].main, Device::Cpu);
  // A rule that splits a layer's experts is planned (and reported) but cannot be executed.
  o = options(12 * GiB);
  o.overrides = parse_tensor_overrides(R"(blk\.0\.ffn_up_exps=CUDA0)");
  o.cpu_moe = true;
  const Plan odd = make_plan(spec, o);
  expect_error([&] { execution_placement(spec, odd); }, "splits layer 0's routed experts over both devices");
}

// Issue 21 item 6: with MTP speculation planned, the 35B-A3B's MTP block (its 256 experts and
// its KV cache included) goes on the GPU right after the trunk's every-token weights and
// head, before any routed expert, and runs there (execution_placement); its small input
// part (nextn.*) stays on the CPU beside the embedding. Without MTP speculation the block
// gets only room the experts leave (none at 12 GiB) and no cache.
TEST(Planner, MtpSpeculationPlacesTheMtpBlockFirst) {
  model::synth::Preset preset = model::synth::find_preset("qwen35moe-35b-a3b");
  preset.n_nextn = 1;
  const ModelSpec spec = model_spec(preset, model::synth::find_file_type("q4_k_m"));
  const int64_t mtp_layer = spec.hp.n_layer;
  auto mtp_bytes = [&](const Plan& plan, Device d, bool input_part) {
    uint64_t total = 0;
    for (size_t i = 0; i < spec.tensors.size(); ++i) {
      const TensorSpec& t = spec.tensors[i];
      if (t.layer == mtp_layer && mtp_input_part(t.name) == input_part && plan.tensor_device[i] == d) total += t.bytes;
    }
    return total;
  };
  auto mtp_kv = [&](const Plan& plan) -> const Buffer* {
    for (const Buffer& b : plan.buffers) {
      if (b.layer == mtp_layer && b.kind == BufferKind::kKvCache) return &b;
    }
    return nullptr;
  };
  PlanOptions o = options(12 * GiB);
  o.mtp = true;
  const Plan with = make_plan(spec, o);
  check_plan(spec, with);
  EXPECT_TRUE(with.mtp);
  EXPECT_EQ(mtp_bytes(with, Device::Cpu, false), 0u);
  EXPECT_GT(mtp_bytes(with, Device::Cuda, false), uint64_t{400} << 20);  // 256 experts of the block
  EXPECT_EQ(mtp_bytes(with, Device::Cuda, true), 0u);
  EXPECT_GT(mtp_bytes(with, Device::Cpu, true), 0u);
  ASSERT_NE(mtp_kv(with), nullptr);
  EXPECT_EQ(mtp_kv(with)->device, Device::Cuda);
  EXPECT_EQ(mtp_kv(with)->bytes, kv_bytes_per_token(spec.hp, {}) * 4096);
  const ExecutionPlacement at = execution_placement(spec, with);
  EXPECT_EQ(at.layers.size(), static_cast<size_t>(mtp_layer));
  EXPECT_EQ(at.mtp.main, Device::Cuda);
  EXPECT_EQ(at.mtp.experts, Device::Cuda);
  // The block is read for every token now: the roofline counts it.
  const Plan without = make_plan(spec, options(12 * GiB));
  EXPECT_FALSE(without.mtp);
  EXPECT_EQ(mtp_bytes(without, Device::Cuda, false), 0u);
  EXPECT_EQ(mtp_kv(without), nullptr);
  EXPECT_EQ(execution_placement(spec, without).mtp.main, Device::Cpu);
  const Prediction p_with = predict_decode(spec, with, 0, 50.0, 500.0), p_without = predict_decode(spec, without, 0, 50.0, 500.0);
  EXPECT_GT(p_with.gpu_bytes + p_with.cpu_bytes, p_without.gpu_bytes + p_without.cpu_bytes);
  // Its input part cannot be moved to the GPU: planned as asked, refused to run.
  o.overrides = parse_tensor_overrides(R"(nextn\.eh_proj=CUDA0)");
  expect_error([&] { execution_placement(spec, make_plan(spec, o)); }, "the MTP block's input part runs on the CPU");
}

// ---------------------------------------------------------------------------------------
// Sizes and hardware
// ---------------------------------------------------------------------------------------

TEST(Sizes, ParseGoodAndBad) {
  EXPECT_EQ(parse_size("12GiB", "x"), 12 * GiB);
  EXPECT_EQ(parse_size("12G", "x"), 12 * GiB);
  EXPECT_EQ(parse_size("12gib", "x"), 12 * GiB);
  EXPECT_EQ(parse_size("12000MiB", "x"), uint64_t{12000} << 20);
  EXPECT_EQ(parse_size("512M", "x"), uint64_t{512} << 20);
  EXPECT_EQ(parse_size("1.5GiB", "x"), 3 * GiB / 2);
  EXPECT_EQ(parse_size("12GB", "x"), uint64_t{12000000000});
  EXPECT_EQ(parse_size("64K", "x"), uint64_t{65536});
  EXPECT_EQ(parse_size("1T", "x"), uint64_t{1} << 40);
  EXPECT_EQ(parse_size("4096", "x"), uint64_t{4096});
  EXPECT_EQ(parse_size("4096B", "x"), uint64_t{4096});
  EXPECT_EQ(parse_size(" 0 ", "x"), uint64_t{0});
  for (const char* bad : {"", "GiB", "-1G", "12 parsecs", "12GiBs", "1.2.3G", "0.5", "1e3", "99999999999T", "abc"}) {
    expect_error([&] { parse_size(bad, "--vram-budget"); }, std::string("--vram-budget: '") + bad + "' is not a size");
  }
  EXPECT_EQ(format_size(12 * GiB), "12.00 GiB");
  EXPECT_EQ(format_size(uint64_t{512} << 20), "512.0 MiB");
  EXPECT_EQ(format_size(900), "900 B");
}

TEST(Hardware, MeminfoAndOverrides) {
  const MemInfo m = parse_meminfo("MemTotal:       65536 kB\nMemFree:  100 kB\nMemAvailable:   32768 kB\n");
  EXPECT_EQ(m.total, uint64_t{65536} * 1024);
  EXPECT_EQ(m.available, uint64_t{32768} * 1024);
  expect_error([] { parse_meminfo("MemTotal: 1 kB\n"); }, "no MemAvailable line");
  HardwareOverrides o;
  o.vram_budget = 12 * GiB, o.ram = 64 * GiB, o.cpu_gbps = 50, o.gpu_gbps = 3000;
  const Hardware hw = probe_hardware(o, /*measure=*/false);
  EXPECT_EQ(hw.vram_budget, 12 * GiB);
  EXPECT_EQ(hw.ram_budget, 64 * GiB);
  EXPECT_EQ(hw.cpu_gbps, 50.0);
  EXPECT_EQ(hw.gpu_gbps, 3000.0);
  EXPECT_GE(hw.logical_cpus, 1);
  // Without overrides and a GPU: no VRAM, RAM from /proc/meminfo, bandwidths unknown.
  const Hardware probed = probe_hardware({}, /*measure=*/false);
  if (!probed.gpu) { EXPECT_EQ(probed.vram_budget, 0u); }
  EXPECT_GT(probed.ram_budget, 0u);
  EXPECT_FALSE(probed.cpu_gbps.has_value());
}

TEST(Hardware, ReadBandwidthProbe) {
  const ReadBandwidthProbe probe(size_t{64} << 20, 1);
  const std::vector<double> gbps = probe.measure(1, 2);
  ASSERT_EQ(gbps.size(), 2u);
  for (double x : gbps) EXPECT_GT(x, 0.1);
  expect_error([] { ReadBandwidthProbe(size_t{1} << 20, 1); }, ">= 64 MiB");
  expect_error([&] { probe.measure(2, 1); }, "threads must be 1..1");
}

// ---------------------------------------------------------------------------------------
// The roofline
// ---------------------------------------------------------------------------------------

// A two-layer MoE small enough to add up by hand.
ModelSpec hand_spec() {
  ModelSpec s;
  s.name = "hand";
  s.hp.arch = "qwen3moe";
  s.hp.n_layer = 2, s.hp.n_embd = 32, s.hp.n_head = 1, s.hp.n_head_kv = 1, s.hp.head_dim = 32, s.hp.n_rot = 32;
  s.hp.n_vocab = 100, s.hp.n_expert = 4, s.hp.n_expert_used = 1, s.hp.n_ff_expert = 16;
  const auto add = [&](std::string name, std::vector<int64_t> dims, uint64_t bytes) {
    const int64_t layer = layer_of(name);
    const Role role = classify(name, layer, s.hp);
    s.tensors.push_back({std::move(name), DType::F32, std::move(dims), bytes, role, layer});
  };
  add("token_embd.weight", {32, 100}, 12800);  // one row: 128 bytes
  add("output.weight", {32, 100}, 12800);
  for (const char* b : {"blk.0.", "blk.1."}) {
    add(std::string(b) + "attn_q.weight", {32, 32}, 4096);
    add(std::string(b) + "ffn_gate_exps.weight", {32, 16, 4}, 8000);  // a token reads 1/4: 2000
    add(std::string(b) + "ffn_up_shexp.weight", {32, 16}, 1000);
  }
  return s;
}

TEST(Roofline, MatchesAHandComputation) {
  const ModelSpec spec = hand_spec();
  PlanOptions o = options(GiB, GiB);
  o.n_ctx = 100;  // f16 K and V rows of 32 values: 128 bytes per position per layer
  o.overrides = parse_tensor_overrides(R"(blk\.0\.ffn_gate_exps=CPU)");
  const Plan plan = make_plan(spec, o);
  check_plan(spec, plan);
  const Prediction p = predict_decode(spec, plan, 50, 1.0, 10.0);
  // CPU: embedding row 128 + layer 0's experts 8000/4.
  EXPECT_DOUBLE_EQ(p.cpu_bytes, 128 + 2000);
  // GPU: head 12800 + 2 x attn_q 4096 + 2 x shared 1000 + layer 1's experts 2000
  //      + KV at depth 50 in both layers: 2 x 50 x 128.
  EXPECT_DOUBLE_EQ(p.gpu_bytes, 12800 + 8192 + 2000 + 2000 + 12800);
  EXPECT_DOUBLE_EQ(p.cpu_ms, 2128 / 1e9 * 1e3);
  EXPECT_DOUBLE_EQ(p.gpu_ms, 37792 / 1e10 * 1e3);
  // Layer 0 overlaps its CPU experts (2 us) with its GPU shared expert (0.1 us).
  EXPECT_DOUBLE_EQ(p.overlap_ms, 1000 / 1e10 * 1e3);
  ASSERT_TRUE(p.tok_s.has_value());
  EXPECT_NEAR(*p.ms, 0.002128 + 0.0037792 - 0.0001, 1e-12);
  EXPECT_NEAR(*p.tok_s, 1e3 / (0.002128 + 0.0037792 - 0.0001), 1e-6);
  // An unknown bandwidth of a device in use: no tok/s, bytes still there.
  const Prediction q = predict_decode(spec, plan, 50, 1.0, std::nullopt);
  EXPECT_FALSE(q.tok_s.has_value());
  EXPECT_DOUBLE_EQ(q.gpu_bytes, p.gpu_bytes);
}

// The issue's figures for the 35B-A3B shape at 12 GiB (CPU GB read per token): layer split
// ~0.70 for the layers' weights (plus the output head a layer split leaves on the CPU),
// -ngl 99 --cpu-moe ~0.61, the default ~0.28.
TEST(Roofline, CpuBytesPerTokenOf35bA3bAt12GiB) {
  const ModelSpec& spec = spec_35b();
  const auto cpu_gb = [&](PlanOptions o) {
    const Plan plan = make_plan(spec, o);
    return predict_decode(spec, plan, 0, 50.0, 1000.0).cpu_bytes / 1e9;
  };
  PlanOptions layers = options(12 * GiB);
  layers.policy = Policy::kLayers;
  PlanOptions cpu_moe = options(12 * GiB);
  cpu_moe.n_gpu_layers = 99, cpu_moe.cpu_moe = true;
  const double split = cpu_gb(layers), moe = cpu_gb(cpu_moe), dflt = cpu_gb(options(12 * GiB));
  uint64_t head = 0;
  for (const TensorSpec& t : spec.tensors) head += t.role == Role::kOutputHead ? t.bytes : 0;
  EXPECT_NEAR(split - head / 1e9, 0.75, 0.05);
  EXPECT_NEAR(moe, 0.61, 0.02);
  EXPECT_NEAR(dflt, 0.28, 0.02);
  EXPECT_GT(split / dflt, 2.5);
}

}  // namespace
}  // namespace tandem::plan
