import Foundation
import Testing
@testable import Strata
import StrataFormats
@testable import StrataModels
import StrataTensor
import StrataTestSupport

// Hostile input II, class 5: valid files where Strata answered differently from the reference
// (transformers and tokenizers apply these fields; so does Strata now).

/// A copy of a fixture folder (its files symlinked) with some of its JSON files replaced by
/// `patch` (file name -> a function of the decoded object).
func patchedFixture(_ name: String, _ patch: [String: (inout [String: Any]) -> Void]) throws -> String {
    let src = Fixtures.model(name), dir = Fixtures.scratch + "/patched-\(name)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for f in try FileManager.default.contentsOfDirectory(atPath: src) where patch[f] == nil {
        try FileManager.default.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: src + "/" + f)
    }
    for (f, change) in patch {
        var obj = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src + "/" + f)))) as? [String: Any] ?? [:]
        change(&obj)
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: dir + "/" + f))
    }
    return dir
}

@Suite struct ReferenceAgreementTests {
    func logits(_ model: CausalLM, _ ids: [Int]) throws -> [Float] {
        let cache = model.makeCache(capacity: ids.count)
        return try ids.map(Int32.init).withUnsafeBufferPointer { Array(try model.forward($0, cache: cache, allLogits: true)) }
    }

    /// `tie_word_embeddings: true` with an `lm_head.weight` in the checkpoint: transformers ties
    /// the head to the embedding and never reads that tensor; so does Strata (the reference
    /// logits of the tied fixture, whatever the stray head holds).
    @Test func tiedEmbeddingsIgnoreAStrayHead() throws {
        let folder = try ModelFolder(path: Fixtures.model("llama-mha-tied"))
        #expect(folder.spec.tiedEmbeddings)
        let ckpt = try folder.requireCheckpoint()
        var tensors: [String: Tensor] = [:]
        for n in ckpt.tensorNames { tensors[n] = try ckpt.tensor(n) }
        #expect(tensors["lm_head.weight"] == nil)
        var rng = TestRNG(5)
        tensors["lm_head.weight"] = rng.tensor([folder.spec.vocabSize, folder.spec.hiddenSize])
        let stray = try folder.architecture.build(config: folder.config, store: MemoryWeightStore(tensors))
        let ref = try Fixtures.reference("llama-mha-tied")
        let got = try logits(stray, ref.sequences[0])
        let want = try Fixtures.referenceLogits("llama-mha-tied", 0).flatMap { $0 }
        #expect(maxAbsDiff(got, want) < 1e-4)
    }

    /// tokenizer_config.json's `add_bos_token: false` over a post-processor that adds BOS:
    /// transformers' Llama tokenizer rebuilds the post-processor without it.
    @Test func addBOSFalseDropsTheBOS() throws {
        let plain = try Tokenizer(directory: Fixtures.model("llama-gqa"))
        let withBOS = try plain.encode("hello world")
        #expect(withBOS.first == 1 && withBOS.count > 1)
        let dir = try patchedFixture("llama-gqa", ["tokenizer_config.json": { $0["add_bos_token"] = false }])
        let noBOS = try Tokenizer(directory: dir)
        #expect(try noBOS.encode("hello world") == Array(withBOS.dropFirst()))
        #expect(try ModelFolder(path: dir).tokenizer!.encode("hello world") == Array(withBOS.dropFirst()))
        let bad = try patchedFixture("llama-gqa", ["tokenizer_config.json": { $0["add_bos_token"] = "false" }])
        #expect { _ = try Tokenizer(directory: bad) } throws: { e in
            guard case let TokenizerError.malformed(file, field, _) = e else { return false }
            return file.hasSuffix("tokenizer_config.json") && field == "add_bos_token"
        }
    }

    /// `sliding_window` on Llama, which transformers' Llama ignores: no cap on the context, the
    /// same logits past the window.
    @Test func llamaIgnoresSlidingWindow() throws {
        let dir = try patchedFixture("llama-gqa", ["config.json": { $0["sliding_window"] = 4 }])
        let folder = try ModelFolder(path: dir)
        #expect(folder.spec.maxPositions == 128)
        let ids = try Fixtures.reference("llama-gqa").sequences[0]
        #expect(ids.count > 4)
        let got = try logits(folder.load(), ids)
        #expect(maxAbsDiff(got, try Fixtures.referenceLogits("llama-gqa", 0).flatMap { $0 }) < 1e-4)
        // Mistral applies its window (as a cap on the context)
        let mistral = try patchedFixture("mistral", ["config.json": { $0["sliding_window"] = 16 }])
        #expect(try ModelFolder(path: mistral).spec.maxPositions == 16)
    }

    /// generation_config.json: invalid values are refused once, when the folder opens, naming
    /// the file and the field (not per request as the client's fault); max_new_tokens is the
    /// default number of tokens.
    @Test func generationConfigIsCheckedOnceAndApplied() throws {
        for (field, value) in [("temperature", -1.0 as Any), ("top_p", 0.0 as Any), ("max_new_tokens", -5 as Any), ("repetition_penalty", 0.0 as Any)] {
            let dir = try patchedFixture("llama-gqa", ["generation_config.json": { $0[field] = value }])
            #expect { _ = try ModelFolder(path: dir) } throws: { e in
                guard case let ConfigError.invalidValue(file, f, _) = e else { return false }
                return file.hasSuffix("generation_config.json") && f == field
            }
        }
        let dir = try patchedFixture("llama-gqa", ["generation_config.json": { $0["max_new_tokens"] = 3 }])
        #expect(try ModelFolder(path: dir).samplingDefaults.maxTokens == 3)
    }

    /// config.json BOS/EOS ids outside the vocabulary (tiny Hub checkpoints: GPT-2's 50256 over a
    /// few hundred tokens): transformers runs them, so Strata warns and runs.
    @Test func outOfVocabularySpecialIdsWarnAndRun() throws {
        let dir = try patchedFixture("llama-gqa", ["config.json": { $0["eos_token_id"] = 50256; $0["bos_token_id"] = 50256 },
                                                   "generation_config.json": { $0.removeValue(forKey: "eos_token_id"); $0.removeValue(forKey: "bos_token_id") }])
        let warned = try ModelFolder(path: dir).warnings
        #expect(warned.count == 2 && warned.allSatisfy { $0.contains("50256") && $0.contains("config.json") })
        let loaded = try LoadedModel(directory: dir)
        let r = try Generator(loaded).generate(promptIDs: [1, 5, 9], parameters: SamplingParameters(temperature: 0, maxTokens: 4))
        #expect(r.ids.count == 4)
    }
}

