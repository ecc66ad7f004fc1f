import Foundation
import Testing
@testable import Strata
@testable import StrataPlanner
import StrataTensor

/// A machine with known rates: GEMM time = 1 ms + 0.1 ms per row at 11.5M parameters,
/// 30 GB/s memory, 1 GB/s disk.
func syntheticProfile() -> HardwareProfile {
    let samples = [2, 4, 8, 16, 64, 256, 512].map { m in
        HardwareProfile.GemmSample(m: m, n: 5632, k: 2048, seconds: 1e-3 + 1e-4 * Double(m))
    }
    return HardwareProfile(cpu: "test", cores: 2, threads: 2, memoryBytes: 24 << 30, gemm: samples, memoryReadBytesPerSecond: 30e9,
                           diskReadBytesPerSecond: 1e9, diskWriteBytesPerSecond: 1e9, diskPath: "/tmp", measuredAt: "now")
}

@Suite struct PlannerTests {
    @Test func profileWarningsNameStaleForeignAndLoadedProfiles() {
        let here = HardwareProfile.Machine(cpu: "test", cores: 2, memoryBytes: 24 << 30, openBLASCore: "SkylakeX")
        let day = ISO8601DateFormatter().date(from: "2026-12-02T12:00:00Z")!
        var p = syntheticProfile()
        p.measuredAt = "2026-11-30T12:00:00Z"
        p.openBLASCore = "SkylakeX"
        p.otherLoad = 0.05
        #expect(p.warnings(machine: here, now: day).isEmpty)
        // stale
        var old = p; old.measuredAt = "2026-09-01T00:00:00Z"
        #expect(old.warnings(machine: here, now: day).map { $0.contains("days old") } == [true])
        // unreadable date
        var undated = p; undated.measuredAt = "now"
        #expect(undated.warnings(machine: here, now: day).count == 1)
        // another machine: each difference named
        var other = here; other.cpu = "Intel Xeon"; other.cores = 8; other.openBLASCore = "Haswell"
        let w = p.warnings(machine: other, now: day)
        #expect(w.count == 1 && w[0].contains("another machine") && w[0].contains("Intel Xeon") && w[0].contains("8") && w[0].contains("Haswell"))
        var moreMemory = here; moreMemory.memoryBytes = 64 << 30
        #expect(p.warnings(machine: moreMemory, now: day).count == 1)
        var slightlyLess = here; slightlyLess.memoryBytes = (24 << 30) - (100 << 20)   // a VM's reserve: not another machine
        #expect(p.warnings(machine: slightlyLess, now: day).isEmpty)
        // under load, and not recorded
        var loaded = p; loaded.otherLoad = 0.45
        #expect(loaded.warnings(machine: here, now: day).map { $0.contains("under load") && $0.contains("45%") } == [true])
        var unknown = p; unknown.otherLoad = nil
        #expect(unknown.warnings(machine: here, now: day).map { $0.contains("does not record the load") } == [true])
    }

    /// Prefill GEMMs in the bf16-product modes are charged at the profile's bf16 GEMM rate, for
    /// 16-bit and quantized weights; f32 weights, few rows and the exact mode keep the f32 samples.
    @Test func bf16ProductPrefillUsesItsMeasuredRate() {
        var prof = syntheticProfile()
        // 400 GFLOP/s at every sampled row count: 2 * rows / 400e9 seconds per parameter
        prof.bf16Gemm = [64, 256, 512].map { .init(m: $0, n: 1000, k: 1000, seconds: 2 * Double($0) * 1e6 / 400e9) }
        var c = CostModel(profile: prof)
        let params = 1e7, rows = 512
        for dtype in [DType.bf16, .f16, .q8_0, .q4_k] {
            c.dtype = dtype
            c.bf16Products = false
            let exact = c.linear(params: params, bytes: 2 * params, rows: rows)
            c.bf16Products = true
            let fast = c.linear(params: params, bytes: 2 * params, rows: rows)
            #expect(abs(fast - 2 * params * Double(rows) / 400e9) < 1e-9, "\(dtype)")
            // between samples: linear; 100 rows of 1000 x 1000 parameters at 400 GFLOP/s
            #expect(abs(c.bf16SecondsPerParam(rows: 100)! - 2 * 100 / 400e9) < 1e-15)
            #expect(fast < exact, "\(dtype)")
            // a decode step's few rows: the few-row kernel either way
            #expect(c.linear(params: params, bytes: 2 * params, rows: 4) == { c.bf16Products = false; return c.linear(params: params, bytes: 2 * params, rows: 4) }())
        }
        // quantized weights: the band dequantization on top, once per pass
        var dq = prof
        dq.dequantPerSecond = ["q8_0": 2e9]
        var cq = CostModel(profile: dq)
        cq.dtype = .q8_0
        cq.bf16Products = true
        #expect(abs(cq.linear(params: params, bytes: params, rows: rows) - (2 * params * Double(rows) / 400e9 + params / 2e9)) < 1e-9)
        c.dtype = .f32
        c.bf16Products = true
        let f32 = c.linear(params: params, bytes: 4 * params, rows: rows)
        c.bf16Products = false
        #expect(f32 == c.linear(params: params, bytes: 4 * params, rows: rows))
        // no measured rate: the f32 samples
        var noRate = CostModel(profile: syntheticProfile())
        noRate.dtype = .bf16
        let base = noRate.linear(params: params, bytes: 2 * params, rows: rows)
        noRate.bf16Products = true
        #expect(noRate.linear(params: params, bytes: 2 * params, rows: rows) == base)
    }

    @Test func cpuTimesCountThisProcessAndNotAsOthers() throws {
        let a = try #require(Measure.CPUTimes.now())
        // spin this thread for about 0.3 s: its ticks are ours, not others'
        let t0 = Date()
        var x = 0.0
        while Date().timeIntervalSince(t0) < 0.3 { for i in 0..<10_000 { x += Double(i).squareRoot() } }
        let b = try #require(Measure.CPUTimes.now())
        #expect(x > 0)
        #expect(b.own - a.own >= 10)           // >= 0.1 s of ticks at USER_HZ 100
        #expect(b.total > a.total && b.busy >= a.busy)
        let load = b.otherLoad(since: a)
        #expect(load >= 0 && load <= 1)
    }

    @Test func costModelFitRecoversTheRates() {
        let c = CostModel(profile: syntheticProfile())
        #expect(abs(c.alpha - 1e-3) < 1e-9 && abs(c.beta - 1e-4) < 1e-10)
        // one row is bandwidth-bound
        #expect(abs(c.linear(params: 1e6, bytes: 4e6, rows: 1) - 4e6 / 30e9) < 1e-12)
    }

    /// A decode step reads the LM head as stored: a 16-bit or quantized head costs its own
    /// bytes, not 4 per parameter (the f32 figure is only the default when the bytes are unknown).
    @Test func theHeadIsChargedItsStoredBytes() {
        let c = CostModel(profile: syntheticProfile())
        var inv = PlannerInventory(name: "h", layers: 2, hidden: 64, heads: 4, kvHeads: 4, headDim: 16, vocab: 1000,
                                   layerBytes: [4_000_000, 4_000_000], layerParams: [1_000_000, 1_000_000],
                                   otherBytes: 500_000, headParams: 64_000_000, kvBytesPerToken: 1024, fixedBytes: 0)
        let f32 = c.pass(inv: inv, rows: 1, context: 0, logitRows: 1, streamed: [], prefetch: 0).seconds
        inv.headBytes = 36_000_000  // Q6_K: 0.5625 bytes per parameter
        let q = c.pass(inv: inv, rows: 1, context: 0, logitRows: 1, streamed: [], prefetch: 0).seconds
        #expect(abs((f32 - q) - (c.linear(params: 64e6, bytes: 256e6, rows: 1) - c.linear(params: 64e6, bytes: 36e6, rows: 1))) < 1e-12)
        #expect(abs((f32 - q) - 220e6 / 30e9) < 1e-9)
    }

    /// One row over quantized weights: bounded by the one-row kernel's measured rate when that is
    /// below memory's (the 8-bit kernel is compute-bound on fast memory), else by memory.
    @Test func quantizedDecodeFollowsTheKernelsOwnRate() {
        var prof = syntheticProfile()  // memory reads at 30 GB/s
        prof.oneRowBytesPerSecond = ["q4_k": 20e9, "q8_0": 40e9]
        var c = CostModel(profile: prof)
        c.dtype = .q4_k
        #expect(abs(c.linear(params: 1e6, bytes: 5.625e5, rows: 1) - 5.625e5 / 20e9) < 1e-15)
        c.dtype = .q8_0
        #expect(abs(c.linear(params: 1e6, bytes: 1.0625e6, rows: 1) - 1.0625e6 / 30e9) < 1e-15)
        c.dtype = .q6_k  // not measured (a profile from before the type was read): the slowest measured type's rate
        #expect(abs(c.linear(params: 1e6, bytes: 8.2e5, rows: 1) - 8.2e5 / 20e9) < 1e-15)
        // a layer of two types (gpt-oss: Q8_0 attention, MXFP4 experts): each share at its own rate
        c.dtypeMix = [(.q8_0, 0.25), (.q4_k, 0.75)]
        #expect(abs(c.linear(params: 1e6, bytes: 1e6, rows: 1) - (0.25e6 / 30e9 + 0.75e6 / 20e9)) < 1e-15)
        c.dtypeMix = []
        // exact f32 activations: their own, slower rates; the 8-bit ones no longer apply
        prof.oneRowExactBytesPerSecond = ["q4_k": 6e9]
        c = CostModel(profile: prof)
        c.exactActivations = true
        c.dtype = .q4_k
        #expect(abs(c.linear(params: 1e6, bytes: 5.625e5, rows: 1) - 5.625e5 / 6e9) < 1e-15)
        c.dtype = .q8_0  // no exact rate measured: the slowest exact one, not the 8-bit kernel's 40 GB/s
        #expect(abs(c.linear(params: 1e6, bytes: 1.0625e6, rows: 1) - 1.0625e6 / 6e9) < 1e-15)
        // and through the planner: the request's mode reaches the cost model
        var inv = PlannerInventory(name: "q", layers: 4, hidden: 512, heads: 8, kvHeads: 4, headDim: 64, vocab: 1000,
                                   layerBytes: [Int](repeating: 5_625_000, count: 4), layerParams: [Int](repeating: 10_000_000, count: 4),
                                   otherBytes: 100_000, headParams: 512_000, kvBytesPerToken: 2048, fixedBytes: 0)
        inv.weightDType = .q4_k
        let fast = try! Planner.plan(inv: inv, profile: prof, request: PlanRequest(budgetBytes: 1 << 30, batch: 1, promptTokens: 8, outputTokens: 8))
        let slow = try! Planner.plan(inv: inv, profile: prof, request: PlanRequest(budgetBytes: 1 << 30, batch: 1, promptTokens: 8, outputTokens: 8,
                                                                                   exactActivations: true))
        #expect(slow.prediction.decodeTokensPerSecond < fast.prediction.decodeTokensPerSecond / 2)
    }

    /// Predictions use the median of the profile's memory rounds; the best round stays the bound.
    @Test func predictionsUseTheTypicalMemoryRound() {
        var prof = syntheticProfile()
        prof.memoryReadBytesPerSecond = 60e9
        prof.memoryReadRounds = [60e9, 20e9, 30e9]
        #expect(prof.typicalMemoryRead == 30e9)
        prof.memoryReadRounds = [60e9, 20e9, 30e9, 40e9]
        #expect(prof.typicalMemoryRead == 35e9)
        let c = CostModel(profile: prof)
        #expect(abs(c.linear(params: 1e6, bytes: 4e6, rows: 1) - 4e6 / 35e9) < 1e-15)
        prof.memoryReadRounds = nil  // an older profile: its one figure
        #expect(prof.typicalMemoryRead == 60e9)
    }

    /// The profile's per-layer pass overhead (pool hand-offs, norms, attention's jobs) is charged
    /// once per layer and pass, on top of the GEMVs and the element-wise work.
    @Test func passOverheadIsChargedPerLayer() {
        var prof = syntheticProfile()
        let inv = PlannerInventory(name: "o", layers: 3, hidden: 64, heads: 4, kvHeads: 4, headDim: 16, vocab: 1000,
                                   layerBytes: [4_000_000, 4_000_000, 4_000_000], layerParams: [1_000_000, 1_000_000, 1_000_000],
                                   otherBytes: 500_000, headParams: 64_000, kvBytesPerToken: 1024, fixedBytes: 0)
        let without = CostModel(profile: prof).pass(inv: inv, rows: 1, context: 0, logitRows: 1, streamed: [], prefetch: 0).seconds
        prof.passOverheadPerLayer = 1e-4
        let with = CostModel(profile: prof).pass(inv: inv, rows: 1, context: 0, logitRows: 1, streamed: [], prefetch: 0).seconds
        #expect(abs((with - without) - 3e-4) < 1e-12)
    }

    @Test func gemmTimesInterpolateTheSamples() {
        var prof = syntheticProfile()
        // a one-row GEMV sample of a layer's parameters: seconds per parameter from it, scaled by bytes
        prof.gemm.append(.init(m: 1, n: 1000, k: 1000, seconds: 1e6 / 20e9 * 4))
        let c = CostModel(profile: prof)
        let p0 = 5632.0 * 2048
        #expect(abs(c.gemmSecondsPerParam(rows: 16) - (1e-3 + 16e-4) / p0) < 1e-18)
        // halfway between the samples at 16 and 64 rows
        #expect(abs(c.gemmSecondsPerParam(rows: 40) - (1e-3 + 40e-4) / p0) < 1e-18)
        // one row: the GEMV sample (20 GB/s of f32 weights), half the time for 16-bit weights
        #expect(abs(c.linear(params: 1e6, bytes: 4e6, rows: 1) - 4e6 / 20e9) < 1e-12)
        #expect(abs(c.linear(params: 1e6, bytes: 2e6, rows: 1) - 2e6 / 20e9) < 1e-12)
        // 16-bit weights over more rows than the few-row kernel takes: the GEMM plus widening at
        // the profile's rate; up to that many rows the kernel widens in registers, no extra cost
        prof.widenBF16PerSecond = 1e9
        var bf = CostModel(profile: prof)
        bf.dtype = .bf16
        let few = Kernels.maxRows(dtype: .bf16), many = few + 1
        let gemmFew = c.gemmSecondsPerParam(rows: few) * 1e6, gemmMany = c.gemmSecondsPerParam(rows: many) * 1e6
        #expect(abs(bf.linear(params: 1e6, bytes: 2e6, rows: many) - (gemmMany + 1e6 / 1e9)) < 1e-12)
        #expect(abs(bf.linear(params: 1e6, bytes: 2e6, rows: few) - gemmFew) < 1e-12)
        #expect(abs(c.linear(params: 1e6, bytes: 4e6, rows: 16) - (1e-3 + 16e-4) / p0 * 1e6) < 1e-12)
    }

    /// The streaming pipeline against steps worked out by hand: layer 0 resident (1 s of
    /// compute), layers 1 and 2 streamed (2 s reads, 1 s compute each).
    @Test func pipelineMatchesHandWorkedSteps() {
        // two slots: the read of a layer overlaps the compute of the one before; a decode step
        // is the disk time (2 + 2 s); the first pass ends at 5 s
        let two = CostModel.pipeline(compute: [1, 1, 1], read: [nil, 2, 2], tail: 0, slots: 2, passes: 3)
        #expect(two[0] == 5 && two[1] == 9 && two[2] == 13)
        // one slot: a read waits for the previous layer's compute; 6 s per step
        let one = CostModel.pipeline(compute: [1, 1, 1], read: [nil, 2, 2], tail: 0, slots: 1, passes: 3)
        #expect(one[0] == 6 && one[1] == 12 && one[2] == 18)
        // nothing streamed: the sum of the compute and the tail
        #expect(CostModel.pipeline(compute: [1, 2], read: [nil, nil], tail: 0.5, slots: 2, passes: 2) == [3.5, 7])
        // contention: layer 0 streamed (1 s read, 1 s compute), layer 1 resident; the second
        // pass's read overlaps the first pass's layer 0, and at half speed each both take 2 s
        #expect(CostModel.pipeline(compute: [1, 1], read: [1, nil], tail: 0, slots: 2, passes: 2) == [3, 5])
        #expect(CostModel.pipeline(compute: [1, 1], read: [1, nil], tail: 0, slots: 2, passes: 2, computeFactor: 0.5, readFactor: 0.5) == [4, 6])
    }

    /// Resident layers spread between streamed ones keep the disk busy while they compute; in a
    /// block at the front they let it idle once the slots are full. The planner finds the
    /// spread placement, which the fill-the-budget rule does not, and says by how much it wins.
    @Test func planSpreadsResidentLayersAndReportsTheGainOverTheRule() throws {
        let layers = 12
        let inv = PlannerInventory(name: "synthetic", layers: layers, hidden: 1024, heads: 8, kvHeads: 8, headDim: 128, vocab: 1000,
                                   layerBytes: [Int](repeating: 100_000_000, count: layers), layerParams: [Int](repeating: 25_000_000, count: layers),
                                   otherBytes: 8_000_000, headParams: 1_000_000, kvBytesPerToken: 8192, fixedBytes: 50_000_000)
        // 25M parameters x 16 rows compute in 0.048 s; a 100 MB layer reads in 0.1 s at 1 GB/s
        var prof = syntheticProfile()
        prof.gemm = [2, 16, 64].map { HardwareProfile.GemmSample(m: $0, n: 5632, k: 2048, seconds: 3e-3 * Double($0) * 5632 * 2048 / 25e6) }
        prof.diskReadBytesPerSecond = 1e9
        let budget = 50_000_000 + 8_000_000 + 64 * 1024 * 1024 + 2 * 100_000_000 + 6 * 100_000_000 + 20_000_000
        let plan = try Planner.plan(inv: inv, profile: prof, request: PlanRequest(budgetBytes: budget, batch: 16, promptTokens: 16, outputTokens: 16, maxPrefetch: 1))
        let resident = Set(0..<layers).subtracting(plan.streamedLayers)
        #expect(resident.count >= 5)
        // not the rule's first layers: spread, so no two resident layers are neighbours here
        #expect(resident != Set(0..<resident.count))
        #expect(plan.ruleTokensPerSecond > 0 && plan.prediction.aggregateTokensPerSecond > plan.ruleTokensPerSecond)
        #expect(plan.versusRule.contains("%") && plan.binding.contains("spread"))
        // the same model of the rule's placement, computed here: first layers resident
        let cost = CostModel(profile: prof)
        let ruleStreamed = Set(resident.count..<layers)
        let rule = cost.predict(inv: inv, batch: 16, promptTokens: 16, outputTokens: 16, streamed: ruleStreamed, prefetch: 1, peakResident: 0)
        #expect(abs(rule.aggregateTokensPerSecond - plan.ruleTokensPerSecond) < 1e-9)
    }

    /// The disk figure measured on an existing file: every byte asked for is read (a rate comes
    /// back), and a missing file is an error naming it.
    @Test func fileReadBandwidthReadsTheFileOrNamesIt() throws {
        let path = NSTemporaryDirectory() + "strata-read-\(getpid()).bin"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: path))
        let rate = try Profiler.fileReadBandwidth(path: path, bytes: 2 << 20, readChunk: 1 << 20)
        #expect(rate > 0 && rate.isFinite)
        do {
            _ = try Profiler.fileReadBandwidth(path: path + ".missing")
            Issue.record("expected an error for a missing file")
        } catch {
            #expect("\(error)".contains(path + ".missing"))
        }
    }

    @Test func layerPassRunsTheEnginesForwardPassAtEachRowCount() throws {
        // a small shape: the profile's timing of LlamaModel.forward over in-memory layers
        let t = try Measure.layerPassSeconds(rows: [1, 3, 8], hidden: 64, heads: 4, kvHeads: 2, ffn: 96, layers: 2, repeats: 2)
        #expect(t.count == 3 && t.allSatisfy { $0 > 0 && $0.isFinite })
        // the in-memory store names what it lacks, as the checkpoint store does
        do {
            _ = try MemoryWeightStore([:]).tensor("model.norm.weight", layer: -1)
            Issue.record("expected an error for a missing tensor")
        } catch {
            #expect("\(error)".contains("model.norm.weight"))
        }
    }

    @Test func configOnlyFolderTakesTheDTypeFromTheConfig() throws {
        let w = Workload(batch: 1, promptTokens: 512, outputTokens: 128)
        // the fixture's config says "torch_dtype": "float16" and the folder has no weights
        let fromConfig = try PlannerInventory.build(directory: Fixtures.root + "/configs/llama-2-70b", workload: w)
        let f16 = try PlannerInventory.build(directory: Fixtures.root + "/configs/llama-2-70b", workload: w, dtype: .f16)
        let f32 = try PlannerInventory.build(directory: Fixtures.root + "/configs/llama-2-70b", workload: w, dtype: .f32)
        #expect(fromConfig.weightDType == .f16 && fromConfig.weightBytes == f16.weightBytes)
        #expect(f32.weightDType == .f32)  // --dtype overrides the config
        #expect(f32.weightBytes > f16.weightBytes * 19 / 10)
        // transformers 5 writes "dtype"; an unknown value and a missing one name the field
        let base = try String(contentsOfFile: Fixtures.root + "/configs/llama-2-70b/config.json", encoding: .utf8)
        let dir = NSTemporaryDirectory() + "strata-cfgonly-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ text: String) throws { try text.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8) }
        try write(base.replacingOccurrences(of: "\"torch_dtype\": \"float16\"", with: "\"dtype\": \"bfloat16\""))
        #expect(try PlannerInventory.build(directory: dir, workload: w).weightDType == .bf16)
        try write(base.replacingOccurrences(of: "\"torch_dtype\": \"float16\"", with: "\"torch_dtype\": \"int4\""))
        #expect { try PlannerInventory.build(directory: dir, workload: w) } throws: { "\($0)".contains("torch_dtype") && "\($0)".contains("int4") }
        try write(base.replacingOccurrences(of: "\"torch_dtype\": \"float16\",", with: ""))
        #expect { try PlannerInventory.build(directory: dir, workload: w) } throws: { "\($0)".contains("--dtype") }
    }

    @Test func plansRespectTheBudgetAndStreamWhenTheyMust() throws {
        let dir = Fixtures.root + "/configs/llama-2-70b"
        let inv = try PlannerInventory.build(directory: dir, workload: Workload(batch: 1, promptTokens: 512, outputTokens: 128), dtype: .f16)
        #expect(inv.layers == 80 && abs(Double(inv.weightBytes) - 138e9) < 3e9)  // Llama-2-70B in f16: ~138 GB
        let p = syntheticProfile()
        let plan = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 20 << 30, promptTokens: 512, outputTokens: 128))
        #expect(!plan.streamedLayers.isEmpty && plan.prediction.bottleneck == "disk")
        #expect(plan.ledger.values.reduce(0, +) <= 20 << 30 && plan.prediction.peakResidentBytes <= 20 << 30)
        // disk-bound: a decode step reads the streamed bytes at 1 GB/s, shared by the batch
        let streamedBytes = plan.streamedLayers.reduce(0) { $0 + inv.layerBytes[$1] }
        #expect(abs(plan.prediction.decodeStepSeconds - Double(streamedBytes) / 1e9) / plan.prediction.decodeStepSeconds < 0.05)
        #expect(plan.batch > 1)  // throughput: a bigger batch amortizes the weight reads (FlexGen)
        // more RAM never predicts slower, and the curve rises
        let ys = plan.budgetCurve.map { $0[1] }
        #expect(ys.count >= 2 && zip(ys, ys.dropFirst()).allSatisfy { $0 <= $1 * 1.0001 })
        // latency objective picks batch 1
        let lat = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 20 << 30, promptTokens: 512, outputTokens: 128, objective: .latency))
        #expect(lat.batch == 1)
        // too small a budget: the error states the minimum, and the minimum plans
        do {
            _ = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 1 << 30, batch: 1, promptTokens: 512, outputTokens: 128))
            Issue.record("expected budgetTooSmall")
        } catch let PlanError.budgetTooSmall(budget, minimum) {
            #expect(budget == 1 << 30 && minimum > budget)
            let ok = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: minimum, batch: 1, promptTokens: 512, outputTokens: 128, maxPrefetch: 0))
            #expect(ok.streamedLayers.count == 80 - 0 || ok.streamedLayers.count > 70)
        }
        // everything fits: nothing streams
        let big = try Planner.plan(inv: inv, profile: p, request: PlanRequest(budgetBytes: 400 << 30, batch: 1, promptTokens: 512, outputTokens: 128))
        #expect(big.streamedLayers.isEmpty && big.prediction.bottleneck != "disk")
        // reports render
        let text = PlanReport.text(plan, inv: inv, profile: p)
        #expect(text.contains("Budget ledger") && text.contains("bottleneck: disk") && text.contains("D"))
        #expect(PlanReport.svg(plan, inv: inv).hasPrefix("<svg"))
        let json = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        #expect(json.contains("\"streamed_layers\"") && json.contains("\"budget_curve\""))
    }
}
