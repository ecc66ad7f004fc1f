import Foundation
import Testing
@testable import Strata
@testable import StrataMemory
@testable import StrataModels
import StrataTensor

@Suite(.serialized) struct TieringTests {
    let greedy = SamplingParameters(temperature: 0, maxTokens: 16, stopAtEOS: false)

    func allRAM(_ name: String, _ prompts: [[Int]]) throws -> [[Int]] {
        let loaded = try LoadedModel(directory: Fixtures.model(name))
        return try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: greedy).ids }
    }

    @Test(arguments: ["llama-gqa", "gpt2", "llama-gqa-bf16", "qwen3", "phi3", "gemma2", "gemma3-mm", "qwen3-moe", "mixtral", "gpt-oss"])
    func streamedLayersGiveTheSameLogitsAndTokens(name: String) throws {
        let dir = Fixtures.model(name)
        let spec = try ModelRegistry.spec(directory: dir)
        let inv = try WeightInventory(directory: dir)
        #expect(inv.layerBytes.count == spec.layers && inv.layerBytes.allSatisfy { $0 > 0 })
        // layer 1 streamed through one staging slot, layer 0 resident
        let ledger = Ledger(budget: nil)
        let store = try TieredWeightStore(locations: inv.locations, streamed: [1], prefetchDepth: 0, ledger: ledger, location: dir)
        defer { store.shutdown() }
        let tiered = try ModelRegistry.load(directory: dir, store: store)
        // building the model reads no streamed layer beyond what the one slot prefetches (its
        // norms and biases are resident), so a run streams each layer once per pass
        let residentBytes = inv.locations.filter { $0.layer != 1 || TieredWeightStore.keptResident($0) }.reduce(0) { $0 + $1.end - $1.begin }
        #expect(store.stats.layersLoaded <= 1 && (ledger.lines[.layerWeights] ?? 0) + (ledger.lines[.otherWeights] ?? 0) == residentBytes)
        let mapped = try ModelRegistry.load(directory: dir)
        let seq = try Fixtures.reference(name).sequences[1].map(Int32.init)
        let a = try tiered.logits(seq), b = try mapped.logits(seq)
        #expect(zip(a.joined(), b.joined()).allSatisfy { $0 == $1 }, "\(name): logits differ")
        // the slot is read again for the next pass on the I/O thread, after the first pass let it
        // go: only a second pass (which waits for that read) makes two loads certain
        let again = try tiered.logits(seq)
        #expect(zip(again.joined(), b.joined()).allSatisfy { $0 == $1 }, "\(name): logits differ on the second pass")
        #expect(store.stats.bytesRead > 0 && store.stats.layersLoaded >= 2)
        #expect(ledger.lines[.staging]! == store.slotBytes && ledger.lines[.layerWeights]! > 0)
        // and tokens, through the generator, on the tiered model
        let loadedTiered = try LoadedModel(directory: dir, model: tiered)
        let prompt = try Fixtures.reference(name).greedy_prompt
        let t = try Generator(loadedTiered).generate(promptIDs: prompt, parameters: greedy).ids
        #expect(t == (try allRAM(name, [prompt])[0]))
    }

    /// `LoadedModel(directory:weights: .tiered)` (what bench-model and bench-batch load by
    /// default) reads every tensor into owned memory: the same logits, bit for bit, as the
    /// mapped model, and both within 1e-4 of transformers (of the largest |logit| for GGUF).
    @Test(arguments: ["llama-gqa", "llama-mha-tied", "llama-gqa-f16", "llama-gqa-bf16", "gemma2", "gguf:llama-q4_k_m", "gguf:qwen3-q8_0"])
    func residentWeightsGiveTheMappedLogits(name: String) throws {
        let gguf = name.hasPrefix("gguf:")
        let short = String(name.dropFirst(gguf ? 5 : 0))
        let dir = gguf ? GGUFFixtures.path(short) : Fixtures.model(short)
        // the resident model reads its own copy: with tied embeddings (none left cold, read a
        // row at a time from the mapping) it answers after its files are cut to nothing
        let fm = FileManager.default
        let tmp = NSTemporaryDirectory() + "strata-resident-\(getpid())-\(short)" + (gguf ? ".gguf" : "")
        try? fm.removeItem(atPath: tmp)
        try fm.copyItem(atPath: dir, toPath: tmp)
        defer { try? fm.removeItem(atPath: tmp) }
        let mapped = try LoadedModel(directory: dir, weights: .mmap)
        let resident = try LoadedModel(directory: tmp, weights: .tiered)
        let files = gguf ? [tmp] : try fm.contentsOfDirectory(atPath: tmp).filter { $0.hasSuffix(".safetensors") }.map { tmp + "/" + $0 }
        #expect(!files.isEmpty)
        if resident.spec.tiedEmbeddings { for f in files { #expect(truncate(f, 0) == 0) } }
        let seq = try (gguf ? GGUFFixtures.reference(short).sequences[0] : Fixtures.reference(short).sequences[0]).map(Int32.init)
        let expected = try gguf ? GGUFFixtures.logits(short, 0) : Fixtures.referenceLogits(short, 0)
        let a = try mapped.model.logits(seq), b = try resident.model.logits(seq)
        #expect(a == b, "\(name): resident weights changed the logits")
        var worst: Float = 0, scale: Float = 0
        for (g, e) in zip(b, expected) {
            worst = max(worst, zip(g, e).map { abs($0 - $1) }.max()!)
            scale = max(scale, e.map(abs).max()!)
        }
        #expect(worst / (gguf ? scale : 1) < 1e-4, "\(name): max |diff| \(worst)")
    }

    @Test func tieredRunUnderABudgetMatchesAllRAMAndStaysUnderIt() throws {
        let dir = Fixtures.model("llama-gqa")
        let spec = try ModelRegistry.spec(directory: dir)
        let inv = try WeightInventory(directory: dir)
        let prompts = try (0..<3).map { Array(try Fixtures.reference("llama-gqa").sequences[1].dropFirst($0)) }
        let expected = try allRAM("llama-gqa", prompts)
        let workload = Workload(batch: 3, promptTokens: 19, outputTokens: 16)
        // find the fixed lines, then give a budget that holds one layer resident and streams the other
        let probe = try TieredRun(directory: dir, budget: nil, workload: workload)
        probe.shutdown()
        let fixed = probe.ledger.lines[.runtime]! + probe.ledger.lines[.activations]! + (probe.ledger.lines[.coldRows] ?? 0)
        let perBlock = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 16, type: .kvDefault)
        // less than both layers: both stream through one staging slot (prefetch 0)
        let budget = fixed + inv.otherBytes + inv.layerBytes.max()! + inv.layerBytes[0] - 1 + PlacementRule.kvBlocks(workload, blockSize: 16) * perBlock
        let run = try TieredRun(directory: dir, budget: budget, workload: workload, prefetchDepth: 0)
        defer { run.shutdown() }
        #expect(run.placement.streamedLayers == [0, 1], "placement \(run.placement)")
        let (outs, report) = try run.run(prompts.map { GenerationRequest(prompt: $0, parameters: greedy) })
        #expect(outs.map { $0.ids } == expected)
        #expect(run.ledger.peak <= budget && report.measured.peakResidentBytes == run.ledger.peak)
        #expect(report.measured.diskBytesRead > 0 && report.placement == run.placement)
        // the report encodes with the documented keys
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        for key in ["prefill_tokens_per_second", "decode_tokens_per_second", "aggregate_tokens_per_second", "time_to_first_token_seconds",
                    "disk_bytes_read", "disk_read_bytes_per_second", "compute_seconds", "io_wait_seconds", "peak_resident_bytes",
                    "peak_rss_bytes", "kv_blocks_swapped", "streamed_layers"] {
            #expect(json.contains("\"\(key)\""), "report lacks \(key)")
        }
    }

    @Test func budgetTooSmallStatesTheMinimum() throws {
        let dir = Fixtures.model("llama-gqa")
        do {
            _ = try TieredRun(directory: dir, budget: 1 << 20, workload: Workload(batch: 1, promptTokens: 8, outputTokens: 8))
            Issue.record("expected BudgetError.tooSmall")
        } catch let BudgetError.tooSmall(budget, minimum, detail) {
            #expect(budget == 1 << 20 && minimum > budget)
            #expect(detail.contains("staging") && detail.contains("KV"))
            // the minimum it states is enough
            let run = try TieredRun(directory: dir, budget: minimum, workload: Workload(batch: 1, promptTokens: 8, outputTokens: 8))
            defer { run.shutdown() }
            let (outs, _) = try run.run([GenerationRequest(prompt: [1, 2, 3, 4, 5, 6, 7, 8], parameters: greedy)])
            #expect(outs[0].ids.count == 8 || outs[0].ids.count == 16)
            #expect(run.ledger.peak <= minimum)
        }
    }

    /// Six requests that need more than 12 blocks of 4 tokens at once, their tokens when each
    /// runs alone, and the bytes of one block.
    func swapWorkload() throws -> (LoadedModel, [[Int]], SamplingParameters, [[Int]], Int) {
        let prompts = try (0..<6).map { Array(try Fixtures.reference("llama-gqa").sequences[1].dropFirst($0)) }
        var p = greedy
        p.maxTokens = 10
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let expected = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: p).ids }
        let perBlock = PagedKVCache.bytesPerBlock(layers: loaded.spec.layers, kvDim: loaded.spec.kvDim, blockSize: 4, type: .kvDefault)
        return (loaded, prompts, p, expected, perBlock)
    }

    @Test func swappingToDiskGivesTheSameTokens() throws {
        let (loaded, prompts, p, expected, perBlock) = try swapWorkload()
        let path = Fixtures.scratch + "/swap-\(UUID().uuidString)"
        let swap = try SwapSpace(path: path, bytes: 64 * perBlock, slotBytes: perBlock)
        let e = BatchEngine(loaded: loaded, config: .init(blocks: 12, blockSize: 4), swap: swap)
        let outs = try e.run(prompts.map { GenerationRequest(prompt: $0, parameters: p) })
        #expect(outs.map { $0.ids } == expected)
        #expect(e.stats.blocksSwappedOut > 0 && e.stats.blocksSwappedIn == e.stats.blocksSwappedOut)
        #expect(swap.freeCount == swap.slotCount && e.kv.pool.available == 12 && e.kv.checkInvariants().isEmpty)
    }

    @Test func diskFullWhileSwappingFailsThatSequenceAndTheOthersFinish() throws {
        let (loaded, prompts, p, expected, perBlock) = try swapWorkload()
        let path = Fixtures.scratch + "/swap-small-\(UUID().uuidString)"
        let swap = try SwapSpace(path: path, bytes: 2 * perBlock, slotBytes: perBlock)  // 2 slots: too few
        let e = BatchEngine(loaded: loaded, config: .init(blocks: 12, blockSize: 4), swap: swap)
        let outs = try e.run(prompts.map { GenerationRequest(prompt: $0, parameters: p) })
        let failed = outs.filter { $0.stopReason == .error }
        #expect(!failed.isEmpty)
        for f in failed { #expect(f.error?.contains("swap space full") == true && f.error?.contains(path) == true) }
        for o in outs where o.stopReason != .error { #expect(o.ids == expected[o.index], "request \(o.index)") }
        #expect(outs.count == 6 && e.kv.pool.available == 12 && e.kv.checkInvariants().isEmpty)
        // an unwritable path is a clear error too
        #expect(throws: FileError.self) { try SwapSpace(path: "/proc/strata-cannot-write", bytes: perBlock, slotBytes: perBlock) }
    }
}
