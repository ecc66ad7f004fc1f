import Foundation
import StrataTestSupport
import Testing
@testable import StrataFormats
@testable import StrataModels
import StrataTensor
import StrataPlanner
@testable import StrataMemory
@testable import Strata

/// Mixtures of experts (Qwen3-MoE, Mixtral): logits, greedy tokens, batched and streamed runs are
/// in the model lists of ModelTests, GenerationTests, PagedTests and TieringTests; here the
/// tensor table's expert rows and bad input.
@Suite struct MoETests {
    @Test func theTableNamesEachExpertAndTheStackedTensor() throws {
        let t = Qwen3MoeArchitecture.tensors
        #expect(t.place(of: "model.layers.2.mlp.experts.17.up_proj.weight") == TensorPlace(layer: 2, role: .expertUp, expert: 17))
        #expect(t.place(of: "model.layers.0.mlp.gate.weight") == TensorPlace(layer: 0, role: .router))
        #expect(t.place(of: "model.layers.1.mlp.gate_proj.weight") == TensorPlace(layer: 1, role: .mlpGate))
        // llama.cpp's stacked experts: one tensor per layer and matrix, no expert index
        #expect(t.hfName(gguf: "blk.3.ffn_down_exps.weight") == "model.layers.3.mlp.experts.down_proj.weight")
        #expect(t.place(of: "model.layers.3.mlp.experts.down_proj.weight") == TensorPlace(layer: 3, role: .expertDown))
        #expect(t.hfName(gguf: "blk.3.ffn_gate_inp.weight") == "model.layers.3.mlp.gate.weight")
        #expect(t.ggufName(hf: "model.layers.3.mlp.experts.down_proj.weight") == "blk.3.ffn_down_exps.weight")
        // names that only look like an expert's
        for bad in ["model.layers.0.mlp.experts.x.up_proj.weight", "model.layers.0.mlp.experts.01.up_proj.weight",
                    "model.layers.0.mlp.experts..up_proj.weight", "model.layers.0.mlp.experts.-1.up_proj.weight"] {
            #expect(t.place(of: bad) == nil, "\(bad)")
        }
        let m = MixtralArchitecture.tensors
        #expect(m.place(of: "model.layers.1.block_sparse_moe.experts.3.w2.weight") == TensorPlace(layer: 1, role: .expertDown, expert: 3))
        #expect(m.name(.expertUp, layer: 1, expert: 2) == "model.layers.1.block_sparse_moe.experts.2.w3.weight")
    }

    @Test func theSpecCountsTheExpertsAndTheSparseLayers() throws {
        let q = try ModelRegistry.spec(directory: Fixtures.model("qwen3-moe"))
        #expect(q.moe == MoEShape(experts: 8, expertsPerToken: 3, intermediate: 32, sparseLayers: [true, false, true]))
        let m = try ModelRegistry.spec(directory: Fixtures.model("mixtral"))
        #expect(m.moe == MoEShape(experts: 4, expertsPerToken: 2, intermediate: 96, sparseLayers: [true, true]))
        // gpt-oss: every layer sparse; the context not capped at the window (only some layers slide)
        let g = try ModelRegistry.spec(directory: Fixtures.model("gpt-oss"))
        #expect(g.moe == MoEShape(experts: 4, expertsPerToken: 2, intermediate: 32, sparseLayers: [true, true, true]) && g.maxPositions == 128)
    }

    /// gpt-oss's hub names (bare parameters, `_bias`) and llama.cpp's: each tensor's place, and a
    /// GGUF name's hub-side name.
    @Test func gptOssNamesAreReadInBothLayouts() {
        let t = GptOssArchitecture.tensors
        #expect(t.place(of: "model.layers.2.mlp.experts.gate_up_proj") == TensorPlace(layer: 2, role: .expertGateUp))
        #expect(t.place(of: "model.layers.2.mlp.experts.gate_up_proj_bias") == TensorPlace(layer: 2, role: .expertGateUp))
        #expect(t.place(of: "model.layers.0.mlp.experts.down_proj") == TensorPlace(layer: 0, role: .expertDownInOut))
        #expect(t.place(of: "model.layers.1.self_attn.sinks") == TensorPlace(layer: 1, role: .attentionSinks))
        #expect(t.place(of: "model.layers.1.self_attn.sinks.weight") == nil)
        #expect(t.place(of: "model.layers.1.mlp.router.bias") == TensorPlace(layer: 1, role: .router))
        #expect(t.hfName(gguf: "blk.1.attn_sinks.weight") == "model.layers.1.self_attn.sinks")
        #expect(t.hfName(gguf: "blk.3.ffn_down_exps.bias") == "model.layers.3.mlp.experts.down_proj_split.bias")
        #expect(t.hfName(gguf: "blk.0.post_attention_norm.weight") == "model.layers.0.post_attention_layernorm.weight")
        #expect(t.ggufName(hf: "model.layers.0.mlp.experts.gate_up_proj") == nil)
    }

    func copy(_ name: String) throws -> String {
        let d = NSTemporaryDirectory() + "strata-moe-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.copyItem(atPath: Fixtures.model(name), toPath: d)
        return d
    }

    @Test func badExpertConfigsNameTheField() throws {
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("qwen3-moe", { $0["num_experts_per_tok"] = 9 }, "num_experts_per_tok"),
            ("qwen3-moe", { $0["num_experts_per_tok"] = 0 }, "num_experts_per_tok"),
            ("qwen3-moe", { $0["num_local_experts"] = 0 }, "num_experts"),
            ("qwen3-moe", { $0["moe_intermediate_size"] = -4 }, "moe_intermediate_size"),
            ("qwen3-moe", { $0["mlp_only_layers"] = [5] }, "mlp_only_layers"),
            ("qwen3-moe", { $0["decoder_sparse_step"] = 0 }, "decoder_sparse_step"),
            ("mixtral", { $0["num_local_experts"] = 1_000_000 }, "num_experts"),
            ("gpt-oss", { $0["layer_types"] = ["sliding_attention", "full_attention"] }, "layer_types"),
            ("gpt-oss", { $0["layer_types"] = ["sliding_attention", "chunked_attention", "full_attention"] }, "layer_types"),
            ("gpt-oss", { $0["swiglu_limit"] = -1.0 }, "swiglu_limit"),
            ("gpt-oss", { $0["sliding_window"] = 0 }, "sliding_window"),
            ("gpt-oss", { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 32.0, "rope_theta": 150000.0] }, "original_max_position_embeddings"),
            ("gpt-oss", { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 32.0, "beta_fast": -2.0, "original_max_position_embeddings": 4096] }, "beta_fast"),
        ]
        for (name, edit, field) in cases { try expectConfigError(copy(name), edit, naming: field) }
    }

    @Test func aMissingOrMisshapenExpertIsNamed() throws {
        let d = try copy("mixtral")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let f = try SafetensorsFile(path: d + "/model.safetensors")
        let gone = "model.layers.1.block_sparse_moe.experts.3.w3.weight"
        var kept = try f.ordered.filter { $0.name != gone }.map { ($0.name, try f.tensor($0.name).contiguousF32()) }
        try SafetensorsWriter.write(path: d + "/model.safetensors", tensors: kept)
        #expect(throws: SafetensorsError.missingTensor(name: gone, checkpoint: d)) { try ModelRegistry.load(directory: d) }
        kept.append((gone, Tensor(zeros: [48, 96])))
        try SafetensorsWriter.write(path: d + "/model.safetensors", tensors: kept)
        #expect(throws: TensorError.shapeMismatch(context: "\(gone) in \(d)", expected: [96, 48], actual: [48, 96])) {
            try ModelRegistry.load(directory: d)
        }
    }

    /// Experts read one by one through the expert cache (1 slot: every expert a group of its
    /// own; 3 slots), with a layer's dense part streamed too: the logits of the all-RAM model,
    /// bit for bit (the experts run in the same order), and every routed expert counted.
    @Test(arguments: ["qwen3-moe", "mixtral", "gguf:qwen3moe-q4_k_m", "gguf:mixtral-q4_k_m", "gguf:gpt-oss-mxfp4"])
    func expertsThroughTheCacheGiveTheSameLogits(name: String) throws {
        let gguf = name.hasPrefix("gguf:")
        let short = String(name.dropFirst(gguf ? 5 : 0))
        let dir = gguf ? GGUFFixtures.path(short) : Fixtures.model(short)
        let folder = try ModelFolder(path: dir)
        let spec = folder.spec, moe = try #require(spec.moe)
        let inv = try WeightInventory(folder: folder)
        let sparse = moe.sparseLayers.filter { $0 }.count
        #expect(inv.experts.map(\.count) == moe.sparseLayers.map { $0 ? moe.experts : 0 })
        #expect(inv.expertLayerBytes.reduce(0, +) == inv.experts.joined().reduce(0) { $0 + $1.bytes })
        let seq = gguf ? try GGUFFixtures.reference(short).sequences[1] : try Fixtures.reference(short).sequences[1]
        let want = try folder.load().logits(seq.map(Int32.init))
        for slots in [1, 3] {
            let ledger = Ledger(budget: nil)
            let cache = try ExpertCache(experts: inv.experts, slots: slots, ledger: ledger)
            let store = try TieredWeightStore(locations: inv.locations, streamed: [1], prefetchDepth: 0, ledger: ledger, location: dir, experts: cache)
            defer { store.shutdown() }
            let model = try folder.load(store: store)
            let got = try model.logits(seq.map(Int32.init))
            #expect(got == want, "\(name), \(slots) slots")
            // every token chose k experts in every sparse layer: one pin each (a pass groups a
            // token's uses of one expert, so at most that many)
            let s = cache.stats
            #expect(s.misses > 0 && s.hits + s.misses <= seq.count * moe.expertsPerToken * sparse && s.bytesRead > 0, "\(s)")
            #expect(s.layerMisses.count == spec.layers && zip(s.layerHits, moe.sparseLayers).allSatisfy { $1 || $0 == 0 })
            #expect(ledger.lines[.expertCache] == slots * cache.slotBytes)
            // no expert's bytes are resident or staged
            let resident = (ledger.lines[.layerWeights] ?? 0) + (ledger.lines[.staging] ?? 0)
            #expect(resident <= inv.denseLayerBytes.reduce(0, +) + inv.denseLayerBytes.max()! + 2 * 4096 * spec.layers)
        }
    }

    /// Under a budget the whole model does not fit: the placement gives the experts cache slots
    /// (the minimum: one token's), the run's tokens are the all-RAM run's, the ledger stays in the
    /// budget, and the report carries the hit rates.
    @Test(arguments: ["gguf:qwen3moe-q4_k_m", "mixtral", "gguf:gpt-oss-mxfp4"])
    func aBudgetBelowTheModelRunsTheExpertsThroughTheCache(name: String) throws {
        let gguf = name.hasPrefix("gguf:")
        let short = String(name.dropFirst(gguf ? 5 : 0))
        let dir = gguf ? GGUFFixtures.path(short) : Fixtures.model(short)
        let prompt = gguf ? try GGUFFixtures.reference(short).greedy_prompt : try Fixtures.reference(short).greedy_prompt
        let params = SamplingParameters(temperature: 0, maxTokens: 12, stopAtEOS: false)
        let workload = Workload(batch: 2, promptTokens: prompt.count, outputTokens: 12)
        let alone = try Generator(LoadedModel(directory: dir)).generate(promptIDs: prompt, parameters: params).ids
        let minimum: Int
        do {
            _ = try TieredRun(directory: dir, budget: 1 << 16, workload: workload)
            Issue.record("expected BudgetError.tooSmall"); return
        } catch let BudgetError.tooSmall(_, m, detail) {
            #expect(detail.contains("expert slots"), "\(detail)")
            minimum = m
        }
        let inv = try WeightInventory(directory: dir)
        let run = try TieredRun(directory: dir, budget: minimum, workload: workload)
        defer { run.shutdown() }
        let k = try #require(run.loaded.spec.moe).expertsPerToken
        #expect(run.placement.expertSlots == k)
        let (outs, report) = try run.run([GenerationRequest(prompt: prompt, parameters: params),
                                          GenerationRequest(prompt: Array(prompt.dropFirst(2)), parameters: params)])
        #expect(outs[0].ids == alone, "\(name)")
        #expect(run.ledger.peak <= minimum)
        let x = try #require(report.measured.expertCache)
        #expect(x.misses > 0 && report.measured.expertHitRate == x.hitRate && report.measured.expertLayerHitRates?.count == run.loaded.spec.layers)
        #expect(report.measured.diskBytesRead >= x.bytesRead && x.bytesRead > 0)
        #expect((run.ledger.peakLines[.expertCache] ?? 0) == k * ExpertCache.slotBytes(inv.experts))
    }

    /// `strata synth --gguf`: a mixture written straight to a quantized GGUF (no f32 copy) that
    /// Strata reads back as the preset's shape, its experts stacked, Q4_K_M's types, and whose
    /// tokens through a 4-slot expert cache are the all-RAM model's.
    @Test func synthWritesAMixtureAsAQuantizedGGUF() throws {
        let preset = try Synth.preset("tiny-moe")
        let path = NSTemporaryDirectory() + "strata-tiny-moe-\(getpid())-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Synth.writeGGUF(preset: preset, scheme: .q4_k_m, seed: 7, to: path)
        let folder = try ModelFolder(path: path)
        let moe = try #require(folder.spec.moe)
        #expect(folder.spec.layers == preset.layers && moe.experts == 16 && moe.expertsPerToken == 4 && moe.intermediate == 256)
        let file = try #require(folder.gguf)
        let exps = try #require(file.tensorsByName["blk.1.ffn_gate_exps.weight"])
        #expect(exps.shape == [16, 256, 256] && exps.type.dtype == .q4_k)
        #expect(file.tensorsByName["blk.0.ffn_gate_inp.weight"]?.type.dtype == .f32)
        #expect(file.tensorsByName["blk.3.ffn_down_exps.weight"]?.type.dtype == .q6_k && file.tensorsByName["blk.0.ffn_down_exps.weight"]?.type.dtype == .q4_k)  // llama-quantize: more bits in the last eighth
        let inv = try WeightInventory(folder: folder)
        #expect(inv.totalBytes + 1_000_000 > (try FileIO.size(path: path)))
        let prompt = [5, 17, 300, 42, 9]
        let params = SamplingParameters(temperature: 0, maxTokens: 6, stopAtEOS: false)
        let alone = try Generator(LoadedModel(directory: path)).generate(promptIDs: prompt, parameters: params).ids
        let ledger = Ledger(budget: nil)
        let store = try TieredWeightStore(locations: inv.locations, streamed: [], prefetchDepth: 0, ledger: ledger, location: path,
                                          experts: try ExpertCache(experts: inv.experts, slots: 4, ledger: ledger))
        defer { store.shutdown() }
        let cached = try LoadedModel(folder: folder, model: folder.load(store: store))
        #expect(try Generator(cached).generate(promptIDs: prompt, parameters: params).ids == alone)
    }

    /// gpt-oss written as llama-quantize's MXFP4_MOE (experts MXFP4, other matrices Q8_0, biases and
    /// the router f32) with `--routing-skew`: the router biases are -S ln(rank + 1) in each layer's
    /// order, the file reads back as the preset, and the tokens through an expert cache of 4 slots
    /// are the all-RAM model's. A router without a bias is refused by name.
    @Test func synthWritesGptOssAsMXFP4WithSkewedRouting() throws {
        let preset = try Synth.preset("tiny-gpt-oss")
        let path = NSTemporaryDirectory() + "strata-tiny-gpt-oss-\(getpid())-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Synth.writeGGUF(preset: preset, scheme: .mxfp4_moe, seed: 3, routingSkew: 1.2, to: path)
        let folder = try ModelFolder(path: path)
        let moe = try #require(folder.spec.moe)
        #expect(folder.spec.architecture == "GptOssForCausalLM" && moe.experts == 16 && moe.expertsPerToken == 4)
        let file = try #require(folder.gguf)
        #expect(file.tensorsByName["blk.2.ffn_up_exps.weight"]?.type.dtype == .mxfp4 && file.tensorsByName["blk.2.ffn_up_exps.weight"]?.shape == [16, 256, 256])
        #expect(file.tensorsByName["blk.2.ffn_up_exps.bias"]?.type.dtype == .f32 && file.tensorsByName["blk.2.ffn_up_exps.bias"]?.shape == [16, 256])
        #expect(file.tensorsByName["blk.0.attn_q.weight"]?.type.dtype == .q8_0 && file.tensorsByName["output.weight"]?.type.dtype == .q8_0)
        #expect(file.tensorsByName["blk.1.attn_sinks.weight"]?.shape == [8])
        let bias = try folder.requireCheckpoint().tensor("model.layers.3.mlp.router.bias").toArray()
        for r in 0..<16 { #expect(abs(bias[MoERouting.expert(rank: r, n: 16, layer: 3)] - Float(-1.2 * log(Double(r + 1)))) < 1e-6) }
        let prompt = [5, 17, 300, 42, 9]
        let params = SamplingParameters(temperature: 0, maxTokens: 6, stopAtEOS: false)
        let alone = try Generator(LoadedModel(directory: path)).generate(promptIDs: prompt, parameters: params).ids
        let inv = try WeightInventory(folder: folder)
        #expect(inv.experts.map(\.count) == [16, 16, 16, 16])
        let ledger = Ledger(budget: nil)
        let store = try TieredWeightStore(locations: inv.locations, streamed: [1], prefetchDepth: 0, ledger: ledger, location: path,
                                          experts: try ExpertCache(experts: inv.experts, slots: 4, ledger: ledger))
        defer { store.shutdown() }
        #expect(try Generator(LoadedModel(folder: folder, model: folder.load(store: store))).generate(promptIDs: prompt, parameters: params).ids == alone)
        #expect(throws: ConfigError.self) { try Synth.writeGGUF(preset: try Synth.preset("tiny-moe"), scheme: .q4_k_m, seed: 1, routingSkew: 1, to: path + "x") }
        #expect(!FileManager.default.fileExists(atPath: path + "x"))
    }

    /// The planner's answer for a mixture under a budget that does not hold it: expert-cache
    /// slots in its placement and its ledger, a predicted hit rate, and a run of that plan at the
    /// planner's own minimum gives the all-RAM tokens inside the budget, every ledger line the
    /// plan's names.
    @Test func thePlannerGivesAMixtureExpertSlotsAndItsMinimumRuns() throws {
        let dir = GGUFFixtures.path("qwen3moe-q4_k_m")
        let folder = try ModelFolder(path: dir)
        let prompt = try GGUFFixtures.reference("qwen3moe-q4_k_m").greedy_prompt
        let params = SamplingParameters(temperature: 0, maxTokens: 10, stopAtEOS: false)
        let requests = [GenerationRequest(prompt: prompt, parameters: params)]
        let alone = try Generator(LoadedModel(directory: dir)).generate(promptIDs: prompt, parameters: params).ids
        let workload = Session.workload(requests)
        var minimum = 0
        do { _ = try Session(folder: folder, ramBudget: 1).plan(workload, profile: syntheticProfile()) } catch let PlanError.budgetTooSmall(_, m) { minimum = m }
        #expect(minimum > 0)
        let session = Session(folder: folder, ramBudget: minimum)
        let plan = try session.plan(workload, profile: syntheticProfile())
        let k = try #require(folder.spec.moe).expertsPerToken
        #expect(plan.expertSlots == k && plan.placement.expertSlots == k)
        #expect(plan.ledger[LedgerLine.expertCache.rawValue] == k * ExpertCache.slotBytes(try WeightInventory(folder: folder).experts))
        let hit = try #require(plan.prediction.expertHitRate)
        #expect(hit >= 0 && hit < 1)
        let result = try session.run(requests, plan: plan)
        #expect(result.outputs[0].ids == alone)
        #expect(result.report.measured.peakResidentBytes <= minimum)
        #expect(Set(result.report.measured.peakResidentLines.keys) == Set(plan.ledger.keys))
        #expect(result.report.predicted?["expert_hit_rate"] == plan.prediction.expertHitRate && result.report.error?["expert_hit_rate"] != nil)
    }

    /// Each eviction policy on a sequence that tells them apart: two slots, expert A pinned three
    /// times, then B, then C: LRU evicts A (the least recent), LFU and SLRU evict B (A is used
    /// more / was hit again, protected); the bytes each pin returns are the expert's own.
    @Test(arguments: ExpertCache.Policy.allCases)
    func evictionPolicies(policy: ExpertCache.Policy) throws {
        let path = NSTemporaryDirectory() + "strata-experts-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // 3 experts x 3 parts of 64 f32 values, part p of expert e filled with 10 e + p
        var values: [Float] = []
        for e in 0..<3 { for p in 0..<3 { values += [Float](repeating: Float(10 * e + p), count: 64) } }
        try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
        let experts = [(0..<3).map { e in
            ExpertLocation(layer: 0, expert: e, parts: (0..<3).map { p in
                .init(path: path, begin: (3 * e + p) * 256, end: (3 * e + p + 1) * 256, dtype: .f32, shape: [8, 8])
            })
        }]
        let cache = try ExpertCache(experts: experts, slots: 2, ledger: Ledger(budget: nil), policy: policy)
        var w: [ExpertWeights] = []
        func use(_ e: Int) throws {
            try cache.pin(layer: 0, experts: [e][...], into: &w)
            try cache.wait(0)
            #expect(cache.ready(0))
            #expect(w[0].gate.f32[0] == Float(10 * e) && w[0].down.f32[63] == Float(10 * e + 2))
            cache.unpin(layer: 0, experts: [e][...])
        }
        for e in [0, 0, 0, 1, 2] { try use(e) }
        #expect(cache.stats.misses == 3 && cache.stats.hits == 2)
        // A (0) still cached under LFU and SLRU, evicted under LRU
        try use(0)
        #expect(cache.stats.hits == (policy == .lru ? 2 : 3), "\(policy)")
    }

    /// The benchmark routings parse, the Zipf ranks map to every expert once per layer, and the
    /// planner's hit-rate model: uniform gives the slots' share; a Zipf law more, growing with
    /// the slots; with LFU (a cache under two tokens' experts) the most popular experts' share.
    @Test func routingModels() {
        #expect(MoERouting.parse("uniform") == .uniform && MoERouting.parse("zipf:1.2") == .zipf(1.2))
        #expect(MoERouting.parse(nil) == .model && MoERouting.parse("zipf:-1") == .model && MoERouting.parse("x") == .model)
        for n in [8, 128, 60] {
            for layer in [0, 5] { #expect(Set((0..<n).map { MoERouting.expert(rank: $0, n: n, layer: layer) }) == Set(0..<n)) }
        }
        var moe = PlannerMoE(experts: 128, perToken: 8, sparseLayers: [Bool](repeating: true, count: 48), expertBytes: 1, expertParams: 1,
                             slotBytes: 1, denseLayerBytes: [], denseLayerParams: [])
        #expect(abs(moe.steadyHitRate(slots: 48 * 32) - 0.25) < 1e-12)
        moe.zipf = 1
        let small = moe.steadyHitRate(slots: 48 * 4), mid = moe.steadyHitRate(slots: 48 * 32), big = moe.steadyHitRate(slots: 48 * 96)
        #expect(mid > 0.25 && small < mid && mid < big && big < 1)
        // 4 slots a layer is under two tokens' experts (16): LFU, the 4 most popular experts' share
        let w = (1...128).map { 1 - pow(1 - pow(Double($0), -1) / (1...128).reduce(0.0) { $0 + pow(Double($1), -1) }, 8) }
        #expect(abs(small - w.prefix(4).reduce(0, +) / w.reduce(0, +)) < 1e-9)
    }

    /// The hit rate predicted from a measured routing histogram against a naive cache over the
    /// same routing: a skewed router (6 layers of 32 experts, 4 per token), its histogram counted
    /// over 2,000 calibration tokens, then 6,000 tokens through an LRU cache (two tokens' experts
    /// and more) and an LFU cache (fewer), the experts pinned layer after layer as a pass does.
    @Test func aMeasuredHistogramPredictsTheCachesHitRate() {
        let layers = 6, n = 32, k = 4
        var rng = TestRNG(2026)
        // per layer: popularity weights exp(1.5 g), g standard normal (Box-Muller)
        let weights: [[Double]] = (0..<layers).map { _ in
            (0..<n).map { _ in
                let u1 = max(1e-12, Double(rng.floats(1)[0] * 0.5 + 0.5)), u2 = Double(rng.floats(1)[0] * 0.5 + 0.5)
                return exp(1.5 * (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
            }
        }
        var state: UInt64 = 88
        func uniform() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) * 0x1.0p-53 }
        // k distinct experts drawn by weight, without replacement
        func route(_ l: Int) -> [Int] {
            var w = weights[l], chosen: [Int] = []
            for _ in 0..<k {
                var u = uniform() * w.reduce(0, +), e = 0
                while e < n - 1 && u >= w[e] { u -= w[e]; e += 1 }
                chosen.append(e); w[e] = 0
            }
            return chosen
        }
        var counts = [[Int]](repeating: [Int](repeating: 0, count: n), count: layers)
        for _ in 0..<2000 { for l in 0..<layers { for e in route(l) { counts[l][e] += 1 } } }
        let hist = RoutingHistogram(model: "m", fingerprint: "f", tokens: 2000, experts: n, perToken: k, counts: counts, measured: "now")
        #expect(hist.mismatch(experts: n, perToken: k, sparseLayers: [Bool](repeating: true, count: layers)) == nil)
        #expect(hist.mismatch(experts: n, perToken: 2, sparseLayers: [Bool](repeating: true, count: layers)) != nil)
        #expect(hist.entropy > 0.5 && hist.entropy < 0.97)
        var moe = PlannerMoE(experts: n, perToken: k, sparseLayers: [Bool](repeating: true, count: layers), expertBytes: 1, expertParams: 1,
                             slotBytes: 1, denseLayerBytes: [], denseLayerParams: [])
        let uniformRates = [24, 48, 96, 144].map { moe.steadyHitRate(slots: $0) }
        moe.routing = hist.shares
        for slots in [24, 36, 48, 96, 144] {
            let lru = expertCacheUsesLRU(slots: slots, workingSet: k * layers)
            // the naive cache: key -> last use (LRU) or uses so far (LFU, ties the least recent)
            var cached: [Int: (last: Int, uses: Int)] = [:], seen = [Int](repeating: 0, count: layers * n)
            var hits = 0, total = 0, tick = 0
            for t in 0..<6000 {
                for l in 0..<layers {
                    for e in route(l) {
                        let key = l * n + e
                        tick += 1; seen[key] += 1
                        if cached[key] != nil { if t >= 1000 { hits += 1 } } else {
                            if cached.count == slots {
                                let victim = cached.min { a, b in
                                    lru ? a.value.last < b.value.last : (seen[a.key], a.value.last) < (seen[b.key], b.value.last)
                                }!.key
                                cached[victim] = nil
                            }
                        }
                        cached[key] = (tick, seen[key])
                        if t >= 1000 { total += 1 }
                    }
                }
            }
            let simulated = Double(hits) / Double(total), predicted = moe.steadyHitRate(slots: slots)
            #expect(abs(simulated - predicted) < 0.04, "\(slots) slots (\(lru ? "LRU" : "LFU")): simulated \(simulated), predicted \(predicted)")
        }
        // a skewed router hits more than uniform routing at every size
        for (i, slots) in [24, 48, 96, 144].enumerated() { #expect(moe.steadyHitRate(slots: slots) > uniformRates[i] + 0.05) }
        // distinct experts a pass of many tokens runs: at most the layer's experts, one token's k
        #expect(abs(moe.distinctExperts(tokens: 1) - Double(k)) < 0.01)
        #expect(moe.distinctExperts(tokens: 10_000) <= Double(n) + 1e-9 && moe.distinctExperts(tokens: 10_000) > Double(n) - 1)
    }

    /// A layer's wait for its missed experts against a naive simulation: each of n experts misses
    /// with the miss rate; the misses are read one after another while the others compute.
    @Test func theWaitForMissedExpertsIsTheReadsBeyondTheOthersCompute() {
        var state: UInt64 = 5
        func uniform() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) * 0x1.0p-53 }
        for (n, p, r, c) in [(8.0, 0.05, 1.2e-3, 0.1e-3), (8.0, 0.74, 1.2e-3, 0.1e-3), (2.0, 0.6, 5e-3, 4e-3), (4.0, 0.3, 1e-3, 2e-3), (8.0, 0.0, 1e-3, 1e-4)] {
            var total = 0.0
            let trials = 200_000
            for _ in 0..<trials {
                var m = 0
                for _ in 0..<Int(n) where uniform() < p { m += 1 }
                total += max(0, Double(m) * r - Double(Int(n) - m) * c)
            }
            let simulated = total / Double(trials), exact = PlannerMoE.exposedReadSeconds(experts: n, missRate: p, readSeconds: r, computeSeconds: c)
            #expect(abs(simulated - exact) <= 0.02 * max(exact, 1e-6), "n \(n) p \(p): simulated \(simulated), computed \(exact)")
        }
        // every expert in RAM: no wait; every one missing: all the reads
        #expect(PlannerMoE.exposedReadSeconds(experts: 8, missRate: 0, readSeconds: 1, computeSeconds: 0.1) == 0)
        #expect(abs(PlannerMoE.exposedReadSeconds(experts: 8, missRate: 1, readSeconds: 1, computeSeconds: 0.1) - 8) < 1e-9)
    }

    /// The model counts each token's experts per layer (the calibration's histogram); the counts
    /// of a prompt add up to its tokens times k in every sparse layer and start again at reset.
    /// A histogram kept beside the profile is found for its checkpoint and refused once the
    /// weights change.
    @Test func theModelCountsItsRoutingAndTheHistogramIsKeptForItsWeights() throws {
        let dir = NSTemporaryDirectory() + "strata-routing-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in try FileManager.default.contentsOfDirectory(atPath: Fixtures.model("qwen3-moe")) {
            try FileManager.default.copyItem(atPath: Fixtures.model("qwen3-moe") + "/" + f, toPath: dir + "/" + f)
        }
        let folder = try ModelFolder(path: dir)
        let model = try folder.load()
        let counted = try #require(model as? RoutingCounted)
        let seq: [Int32] = [5, 17, 3, 99, 42, 8, 1, 64, 23]
        _ = try model.logits(seq)
        let moe = try #require(folder.spec.moe)
        let c = counted.routingCounts
        #expect(c.tokens == seq.count)
        for (l, layer) in c.layers.enumerated() {
            #expect(layer.isEmpty == !moe.sparseLayers[l])
            if !layer.isEmpty { #expect(layer.reduce(0, +) == seq.count * moe.expertsPerToken && layer.count == moe.experts) }
        }
        let hist = RoutingHistogram(model: dir, fingerprint: RoutingHistograms.fingerprint(folder), tokens: c.tokens, experts: moe.experts,
                                    perToken: moe.expertsPerToken, counts: c.layers, measured: "now")
        let file = try RoutingHistograms.save(hist)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(RoutingHistograms.load(for: folder)?.0 == hist)
        counted.resetRoutingCounts()
        #expect(counted.routingCounts.tokens == 0 && counted.routingCounts.layers.allSatisfy { $0.allSatisfy { $0 == 0 } })
        // other weights (a later modification time): not used, and said why
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: dir + "/model.safetensors")
        var notes: [String] = []
        #expect(RoutingHistograms.load(for: try ModelFolder(path: dir), note: { notes.append($0) }) == nil)
        #expect(notes.count == 1 && notes[0].contains("other weights"))
    }

    /// The default policy for a cache's size: LRU when two tokens' experts fit, LFU when they do
    /// not (an LRU smaller than a pass's cycle over the layers evicts what comes next).
    @Test func thePolicyFollowsTheCachesSize() {
        guard ProcessInfo.processInfo.environment["STRATA_EXPERT_POLICY"] == nil else { return }
        #expect(ExpertCache.Policy.chosen(slots: 2043, workingSet: 384) == .lru)
        #expect(ExpertCache.Policy.chosen(slots: 768, workingSet: 384) == .lru)
        #expect(ExpertCache.Policy.chosen(slots: 767, workingSet: 384) == .lfu)
        #expect(ExpertCache.Policy.chosen(slots: 55, workingSet: 64) == .lfu)
    }

    /// A read that fails (the file cut short under the cache) is thrown by `wait`, naming the
    /// file; nothing hangs, the expert is not cached, and the cache serves the others after.
    @Test func aFailedExpertReadIsThrownAndNotCached() throws {
        let path = NSTemporaryDirectory() + "strata-experts-cut-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values = [Float](repeating: 1, count: 2 * 3 * 1024)
        try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
        let experts = [(0..<2).map { e in
            ExpertLocation(layer: 0, expert: e, parts: (0..<3).map { p in
                .init(path: path, begin: (3 * e + p) * 4096, end: (3 * e + p + 1) * 4096, dtype: .f32, shape: [32, 32])
            })
        }]
        let cache = try ExpertCache(experts: experts, slots: 2, ledger: Ledger(budget: nil))
        var w: [ExpertWeights] = []
        try cache.pin(layer: 0, experts: [0][...], into: &w)
        try cache.wait(0)
        cache.unpin(layer: 0, experts: [0][...])
        // expert 1's bytes are gone
        try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: 3 * 4096)
        try cache.pin(layer: 0, experts: [1][...], into: &w)
        do { try cache.wait(0); Issue.record("expected a read error") } catch {
            #expect("\(error)".contains(path), "\(error)")
        }
        cache.unpin(layer: 0, experts: [1][...])
        try cache.pin(layer: 0, experts: [0, 1][...], into: &w)
        #expect(cache.ready(0))  // expert 0 still cached
        #expect(throws: (any Error).self) { try cache.wait(1) }  // and expert 1 read again, failing again
        cache.unpin(layer: 0, experts: [0, 1][...])
    }
}
