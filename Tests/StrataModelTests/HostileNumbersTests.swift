import Foundation
import Testing
@testable import Strata
import StrataTensor

/// Numbers from users, files and flags that once reached allocations and pointer arithmetic
/// unchecked (issue 16): each is refused with a typed error naming the field.
@Suite struct HostileNumbersTests {
    static let loaded: LoadedModel = try! LoadedModel(directory: Fixtures.model("llama-gqa"))

    @Test func tokenIdsAreCheckedBeforeNarrowing() throws {
        let loaded = Self.loaded
        let vocab = loaded.spec.vocabSize
        // 4294967301 wraps to 5 as an Int32: it must be refused, not read as token 5
        for bad in [4_294_967_301, -1, vocab, Int.max, Int.min] {
            #expect(throws: ModelError.tokenOutOfRange(token: bad, vocabSize: vocab)) {
                try Generator(loaded).generate(promptIDs: [1, bad], parameters: .greedy)
            }
            let engine = BatchEngine(loaded: loaded, config: .init(blocks: 8))
            #expect(throws: ModelError.tokenOutOfRange(token: bad, vocabSize: vocab)) {
                try engine.validate(GenerationRequest(prompt: [bad], parameters: .greedy))
            }
            #expect(throws: ModelError.self) { try loaded.model.checkTokens([bad]) }
        }
    }

    @Test func hugeCountsAreRefused() throws {
        let loaded = Self.loaded
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 8))
        for n in [-5, 0, 1_000_000] {
            #expect(throws: SamplingError.self) { try engine.validate(GenerationRequest(prompt: [1], parameters: .greedy, n: n)) }
        }
        for m in [Int.max, -1, SamplingParameters.maxTokensLimit + 1] {
            #expect(throws: SamplingError.self) { try SamplingParameters(temperature: 0, maxTokens: m).validate() }
            #expect(throws: SamplingError.self) { try Generator(loaded).generate(promptIDs: [1], parameters: SamplingParameters(temperature: 0, maxTokens: m)) }
        }
        // a workload from hostile requests stays finite (no overflow in the sizes made from it)
        let w = Session.workload([GenerationRequest(prompt: [1], parameters: SamplingParameters(maxTokens: Int.max), n: Int.max)])
        #expect(w.outputTokens == SamplingParameters.maxTokensLimit && w.batch == 64)
    }

    @Test func byteSizesThatOverflowAreNotSizes() {
        #expect(parseByteSize("8388608TiB") == nil)
        #expect(parseByteSize("1e30GiB") == nil)
        #expect(parseByteSize("9223372036854775807") == nil)
        #expect(parseByteSize("-1") == nil && parseByteSize("nanGiB") == nil)
        #expect(parseByteSize("2GiB") == 2 << 30 && parseByteSize("1000") == 1000)
    }

    @Test func hostilePlacementFilesAreRefused() throws {
        let good = Placement(weights: .tiered, streamedLayers: [1], prefetchDepth: 1, kvBlockSize: 16, kvBlocksRAM: 8, kvBlocksDisk: 0, batchSize: 1,
                             kvType: .f16)
        try good.validate(layers: 2, headDim: 12)
        var cases: [(Placement, String)] = []
        var p = good; p.prefetchDepth = -1; cases.append((p, "prefetch_depth"))
        p = good; p.kvBlocksRAM = -3; cases.append((p, "kv_blocks_ram"))
        p = good; p.kvBlockSize = 1_000_000_000; cases.append((p, "kv_block_size"))
        p = good; p.streamedLayers = [99]; cases.append((p, "streamed_layers"))
        p = good; p.streamedLayers = [1, 1]; cases.append((p, "streamed_layers"))
        p = good; p.batchSize = Int.max; cases.append((p, "batch_size"))
        p = good; p.kvBlocksDisk = -1; cases.append((p, "kv_blocks_disk"))
        p = good; p.kvType = .q8_0; cases.append((p, "kv_type"))  // head_dim 12: q8_0's blocks of 32 straddle heads
        p = good; p.kvType = .q4_k; cases.append((p, "kv_type"))
        for (bad, field) in cases {
            #expect(throws: PlacementError.self, "\(field)") { try bad.validate(layers: 2, headDim: 12) }
            do { try bad.validate(layers: 2, headDim: 12) } catch let PlacementError.invalid(f, _) { #expect(f == field) }
            // and the run refuses it before allocating anything
            #expect(throws: PlacementError.self) {
                _ = try TieredRun(folder: ModelFolder(path: Fixtures.model("llama-gqa")), budget: nil,
                                  workload: Workload(batch: 1, promptTokens: 4, outputTokens: 4), placement: bad)
            }
        }
    }

    /// libFuzzer's find: a vocabulary id of Int.max made vocabSize overflow.
    @Test func tokenizerIdsAreBounded() {
        let huge: [String: Any] = ["model": ["type": "BPE", "vocab": ["a": Int.max], "merges": [] as [Any]]]
        #expect(throws: TokenizerError.self) { try Tokenizer(root: huge, file: "tokenizer.json") }
        let added: [String: Any] = ["model": ["type": "BPE", "vocab": ["a": 0], "merges": [] as [Any]],
                                    "added_tokens": [["id": -7, "content": "<x>"]]]
        #expect(throws: TokenizerError.self) { try Tokenizer(root: added, file: "tokenizer.json") }
    }

    @Test func duplicateTensorNamesAreRefused() throws {
        let path = Fixtures.scratch + "/dup-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let header = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        try writeRawSafetensors(path, header: header, data: [UInt8](repeating: 0, count: 8))
        #expect(throws: SafetensorsError.duplicateTensor(file: path, tensor: "w")) { try SafetensorsFile(path: path) }
    }
}
