import Foundation
import Testing
import Strata
import StrataTensor
import StrataFormats

/// The chat fixture (Tests/Fixtures/chat/model, made by scripts/make_chat_fixtures.py): the
/// llama-gqa model with Llama 2's chat template in tokenizer_config.json and sampling defaults
/// in generation_config.json; transformers' chat ids and greedy tokens under repetition penalties.
enum ChatFixture {
    static let model = Fixtures.root + "/chat/model"
    static func expected() throws -> JSONValue {
        try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: Fixtures.root + "/chat/cases.json")))["model"]!
    }
    static func ints(_ v: JSONValue?) -> [Int] {
        (v?.arrayValue ?? []).map { if case let .int(i) = $0 { return i }; return -1 }
    }
}

@Suite struct ChatFormatTests {
    @Test func folderTemplateRendersAndEncodesAsTransformers() throws {
        let want = try ChatFixture.expected()
        let folder = try ModelFolder(path: ChatFixture.model)
        let format = try folder.requireChatFormat()
        #expect(format.specialTokens["bos_token"] == "<s>" && format.specialTokens["eos_token"] == "</s>" && format.specialTokens["unk_token"] == "<unk>")
        let text = try format.render(messages: want["messages"]!, addGenerationPrompt: true)
        #expect(text == want["text"]?.stringValue)
        #expect(try folder.tokenizer!.encode(text, addSpecialTokens: false) == ChatFixture.ints(want["ids"]))
    }

    /// `--chat-template FILE`: a model without a template (llama-gqa) given the chat fixture's as a
    /// file renders transformers' text with its own special tokens; a missing file and a template
    /// that does not parse are errors naming the file.
    @Test func aTemplateFileGivesAModelWithoutOneAChat() throws {
        let want = try ChatFixture.expected()
        let bare = try ModelFolder(path: Fixtures.model("llama-gqa"))
        #expect(try bare.chatFormat() == nil)
        let cfg = try JSONValue.parse(Data(contentsOf: URL(fileURLWithPath: ChatFixture.model + "/tokenizer_config.json")))
        let file = NSTemporaryDirectory() + "strata-template-\(UUID().uuidString).jinja"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try cfg["chat_template"]!.stringValue!.write(toFile: file, atomically: true, encoding: .utf8)
        let format = try bare.requireChatFormat(templateFile: file)
        #expect(format.origin == file && format.specialTokens["bos_token"] == "<s>")
        #expect(try format.render(messages: want["messages"]!, addGenerationPrompt: true) == want["text"]?.stringValue)
        #expect(throws: ChatFormatError.self) { try bare.chatFormat(templateFile: file + ".missing") }
        do { _ = try bare.chatFormat(templateFile: file + ".missing"); Issue.record("expected an error") } catch {
            #expect("\(error)".contains(file + ".missing"))
        }
        try "{% for m in messages %}{{ m['content'] }".write(toFile: file, atomically: true, encoding: .utf8)
        do { _ = try bare.chatFormat(templateFile: file); Issue.record("expected a syntax error") } catch let e as ChatFormatError {
            guard case let .badTemplate(path, _) = e else { Issue.record("\(e)"); return }
            #expect(path == file)
        }
    }

    /// A GGUF written by strata quantize keeps the chat template (tokenizer.chat_template) and
    /// the special tokens: the same text and ids as transformers from the folder.
    @Test func ggufChatTemplateRendersTheSame() throws {
        let want = try ChatFixture.expected()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("strata-chat-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = try QuantizeModel.run(folder: ModelFolder(path: ChatFixture.model), scheme: .q8_0, out: out)
        let folder = try ModelFolder(path: out)
        let format = try folder.requireChatFormat()
        #expect(format.origin.hasSuffix(":tokenizer.chat_template"))
        #expect(format.specialTokens["bos_token"] == "<s>" && format.specialTokens["eos_token"] == "</s>")
        let text = try format.render(messages: want["messages"]!)
        #expect(text == want["text"]?.stringValue)
        #expect(try folder.tokenizer!.encode(text, addSpecialTokens: false) == ChatFixture.ints(want["ids"]))
    }

    @Test func aTemplateThatRaisesGivesItsMessage() throws {
        let format = try ModelFolder(path: ChatFixture.model).requireChatFormat()
        let bad = try JSONValue.parse(#"[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]"#)
        #expect(throws: JinjaError.raised(message: "Conversation roles must alternate user/assistant/user/assistant/...")) {
            try format.render(messages: bad)
        }
    }

    @Test func badTemplatesAndConfigsAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("strata-chat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            try FileManager.default.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: Fixtures.model("llama-gqa") + "/" + f)
        }
        // no template at all
        #expect(try ModelFolder(path: dir).chatFormat() == nil)
        #expect(throws: ChatFormatError.self) { try ModelFolder(path: dir).requireChatFormat() }
        // a syntax error names the file, line and column
        try #"{"chat_template": "{% for m in messages %}\n{{ m.content "}"#.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        do { _ = try ModelFolder(path: dir).chatFormat(); Issue.record("no error") } catch let ChatFormatError.badTemplate(path, e) {
            #expect(path.hasSuffix("tokenizer_config.json"))
            if case let .syntax(_, line, _) = e { #expect(line == 2) } else { Issue.record("\(e)") }
        }
        // a list of named templates; an unknown name is an error listing the names
        try #"{"chat_template": [{"name": "default", "template": "D{{ messages|length }}"}, {"name": "tool_use", "template": "T"}]}"#
            .write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        #expect(try ModelFolder(path: dir).requireChatFormat().render(messages: .array([])) == "D0")
        #expect(try ModelFolder(path: dir).requireChatFormat(name: "tool_use").render(messages: .array([])) == "T")
        #expect(throws: ChatFormatError.self) { try ModelFolder(path: dir).chatFormat(name: "nope") }
        try #"{"chat_template": 5}"#.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        #expect(throws: ChatFormatError.self) { try ModelFolder(path: dir).chatFormat() }
        // chat_template.jinja wins over tokenizer_config.json
        try "J".write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        try #"{"chat_template": "C"}"#.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        #expect(try ModelFolder(path: dir).requireChatFormat().render(messages: .array([])) == "J")
    }

    @Test func generationConfigDefaults() throws {
        let p = try ModelFolder(path: ChatFixture.model).samplingDefaults
        #expect(p.temperature == 0.7 && p.topP == 0.9 && p.topK == 40 && p.repetitionPenalty == 1.15)
        #expect(p.maxTokens == SamplingParameters().maxTokens && p.minP == 0)
        #expect(try ModelFolder(path: Fixtures.model("llama-gqa")).samplingDefaults == SamplingParameters())
    }
}

@Suite struct SamplingTests {
    /// Greedy decoding with transformers' repetition penalty (over prompt and output) gives
    /// transformers' tokens, through the single-sequence generator and the batch engine.
    @Test func repetitionPenaltyMatchesTransformers() throws {
        let want = try ChatFixture.expected()
        let prompt = ChatFixture.ints(want["ids"])
        let loaded = try LoadedModel(directory: ChatFixture.model)
        guard case let .object(runs)? = want["greedy_repetition_penalty"] else { Issue.record("no runs"); return }
        #expect(runs.count == 3)
        for (penalty, tokens) in runs {
            let p = SamplingParameters(temperature: 0, maxTokens: 24, stopAtEOS: false, repetitionPenalty: Float(penalty)!)
            let single = try Generator(loaded).generate(promptIDs: prompt, parameters: p)
            #expect(single.ids == ChatFixture.ints(tokens), "penalty \(penalty)")
            let engine = BatchEngine(loaded: loaded, config: .init(blocks: 32, blockSize: 16))
            let batch = try engine.run([GenerationRequest(prompt: prompt, parameters: p), GenerationRequest(prompt: Array(prompt.prefix(20)), parameters: p)])
            #expect(batch[0].ids == ChatFixture.ints(tokens), "batch, penalty \(penalty)")
        }
    }

    /// Every penalty against a naive reference that recomputes the penalized logits from the
    /// whole history at each step.
    @Test func penaltiesMatchANaiveReference() {
        var rng = Xoshiro256(seed: 7)
        let vocab = 50
        let prompt = [3, 3, 9, 17]
        for (rep, pres, freq) in [(Float(1.4), Float(0), Float(0)), (1, 0.7, 0), (1, 0, 0.9), (0.7, -0.5, 1.3), (1.2, 1.5, -0.4)] {
            let p = SamplingParameters(temperature: 0, repetitionPenalty: rep, presencePenalty: pres, frequencyPenalty: freq)
            var sampler = Sampler(parameters: p, vocabSize: vocab, prompt: prompt)
            var output: [Int] = []
            for _ in 0..<40 {
                // peaked rows so repeats are likely without penalties
                let row = (0..<vocab).map { i in Float(rng.nextUnit() * 2 - 1) + (i % 7 == 0 ? 3 : 0) }
                var ref = row
                for t in Set(prompt + output) {
                    if rep != 1 { ref[t] = ref[t] > 0 ? ref[t] / rep : ref[t] * rep }
                    let c = output.filter { $0 == t }.count
                    if c > 0 { ref[t] -= freq * Float(c) + pres }
                }
                let want = ref.indices.max { ref[$0] < ref[$1] }!
                let got = row.withUnsafeBufferPointer { sampler.sample($0) }
                #expect(got == want, "rep \(rep) pres \(pres) freq \(freq) step \(output.count)")
                output.append(got)
            }
        }
    }

    @Test func minPDropsUnlikelyTokens() {
        // probabilities 0.5, 0.25, 0.125, ...: min_p 0.3 keeps ids 0 and 1 only (0.25 >= 0.3 x 0.5 ... 0.125 < 0.15)
        let row: [Float] = (0..<10).map { -Float($0) * log(2) }
        var sampler = Sampler(parameters: SamplingParameters(temperature: 1, seed: 3, minP: 0.3), vocabSize: 10)
        var seen = Set<Int>()
        for _ in 0..<400 { seen.insert(row.withUnsafeBufferPointer { sampler.sample($0) }) }
        #expect(seen == [0, 1])
        var all = Sampler(parameters: SamplingParameters(temperature: 1, seed: 3), vocabSize: 10)
        var seenAll = Set<Int>()
        for _ in 0..<400 { seenAll.insert(row.withUnsafeBufferPointer { all.sample($0) }) }
        #expect(seenAll.count > 4)
    }

    /// logit_bias: added to the logits before the choice (with penalties: after them); -100 bans
    /// a token even when every other logit is far lower; the history and the logprobs are the
    /// model's.
    @Test func logitBiasShiftsAndBans() {
        let row: [Float] = [0, 0.5, 3, -200, 1]
        func greedy(_ bias: [Int: Float], penalty: Float = 0) -> Int {
            var p = SamplingParameters(temperature: 0, presencePenalty: penalty)
            p.logitBias = bias
            var s = Sampler(parameters: p, vocabSize: row.count)
            return row.withUnsafeBufferPointer { s.sample($0) }
        }
        #expect(greedy([:]) == 2)
        #expect(greedy([2: -100]) == 4)
        #expect(greedy([1: 2.6]) == 1)               // 0.5 + 2.6 > 3
        #expect(greedy([3: 100]) == 2)               // -200 + 100 stays below
        #expect(greedy([0: -100, 1: -100, 2: -100, 4: -100]) == 3)  // the only token not banned, at -200
        #expect(greedy([2: -100], penalty: 1.5) == 4)
        // sampling never draws a banned token
        var p = SamplingParameters(temperature: 5, seed: 1)
        p.logitBias = [2: -100, 4: -100]
        var s = Sampler(parameters: p, vocabSize: row.count)
        for _ in 0..<300 { #expect(![2, 4].contains(row.withUnsafeBufferPointer { s.sample($0) })) }
        var bad = SamplingParameters()
        bad.logitBias = [3: 101]
        #expect(throws: SamplingError.self) { try bad.validate() }
    }

    @Test func logprobsAreTheModelsLogSoftmax() {
        var rng = Xoshiro256(seed: 11)
        let row = (0..<100).map { _ in Float(rng.nextUnit() * 8 - 4) }
        let m = Double(row.max()!)
        let lse = m + log(row.reduce(0.0) { $0 + exp(Double($1) - m) })
        // penalties and temperature do not change the reported logprobs (they are the model's)
        var sampler = Sampler(parameters: SamplingParameters(temperature: 0.5, seed: 1, repetitionPenalty: 2, logprobs: 5), vocabSize: 100, prompt: [1, 2])
        let id = row.withUnsafeBufferPointer { sampler.sample($0) }
        #expect(abs(Double(sampler.lastLogprob) - (Double(row[id]) - lse)) < 1e-5)
        let top = row.indices.sorted { row[$0] > row[$1] }.prefix(5)
        #expect(sampler.lastTopLogprobs.map(\.id) == Array(top))
        for t in sampler.lastTopLogprobs { #expect(abs(Double(t.logprob) - (Double(row[t.id]) - lse)) < 1e-5) }
    }

    @Test func outOfRangeValuesAreRefused() {
        for (p, field) in [(SamplingParameters(repetitionPenalty: 0), "repetition_penalty"), (SamplingParameters(presencePenalty: 3), "presence_penalty"),
                           (SamplingParameters(frequencyPenalty: -2.5), "frequency_penalty"), (SamplingParameters(minP: 1.5), "min_p"),
                           (SamplingParameters(repetitionPenalty: .nan), "repetition_penalty"), (SamplingParameters(logprobs: 21), "top_logprobs")] {
            #expect(throws: SamplingError.self, "\(field)") { try p.validate() }
            do { try p.validate() } catch let SamplingError.invalid(f, _) { #expect(f == field) } catch {}
        }
    }
}

/// Prompt log-probabilities through the batch engine (echo): each equals the log-softmax of the
/// model's own logits at the position before, for prompts split in chunks of 7 beside other
/// requests decoding, the second and later samples of n taking none.
@Suite struct PromptLogprobTests {
    @Test func promptLogprobsEqualTheLogSoftmaxOfTheModelsLogits() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let v = loaded.spec.vocabSize
        let prompts = [(0..<40).map { ($0 * 37 + 11) % v }, (0..<23).map { ($0 * 13 + 5) % v }]
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 64, blockSize: 4, prefillChunk: 7))
        var reqs = prompts.map { GenerationRequest(prompt: $0, parameters: SamplingParameters(temperature: 0, maxTokens: 3, stopAtEOS: false), n: 2, promptLogprobs: 3) }
        reqs.append(GenerationRequest(prompt: [1, 2, 3], parameters: SamplingParameters(temperature: 0, maxTokens: 20, stopAtEOS: false)))
        let outs = try engine.run(reqs)
        for (p, prompt) in prompts.enumerated() {
            let logits = try loaded.model.logits(prompt.map(Int32.init))
            let mine = try #require(outs.first { $0.index == p && $0.sample == 0 }?.promptLogprobs)
            #expect(mine.count == prompt.count - 1)
            for (i, t) in mine.enumerated() {
                let row = logits[i]
                let m = Double(row.max()!)
                var sum = 0.0
                for x in row { sum += exp(Double(x) - m) }
                let want: Double = Double(row[prompt[i + 1]]) - (m + log(sum))
                #expect(t.id == prompt[i + 1])
                #expect(abs(Double(t.logprob!) - want) < 1e-4, "prompt \(p) token \(i + 1)")
                let best = row.indices.max { row[$0] < row[$1] }!
                #expect(t.topLogprobs.count == 3 && t.topLogprobs[0].id == best)
            }
            #expect(outs.first { $0.index == p && $0.sample == 1 }?.promptLogprobs == nil)
        }
        #expect(outs.first { $0.index == 2 }?.promptLogprobs == nil && outs.first { $0.index == 2 }?.ids.count == 20)
    }
}

/// Hidden states (what /v1/embeddings pools): times the output head they give transformers'
/// logits (the fixtures' references), so they are the model's last hidden states.
@Suite struct HiddenStateTests {
    @Test(arguments: [("llama-gqa", "lm_head.weight"), ("llama-mha-tied", "model.embed_tokens.weight"), ("qwen2", "model.embed_tokens.weight"), ("gpt2", "transformer.wte.weight")])
    func hiddenStatesTimesTheHeadAreTheReferenceLogits(name: String, head: String) throws {
        let loaded = try LoadedModel(directory: Fixtures.model(name))
        let w = try SafetensorsCheckpoint(directory: Fixtures.model(name)).tensor(head)
        let v = loaded.spec.vocabSize, h = loaded.spec.hiddenSize
        #expect(w.shape == [v, h])
        let seq = try Fixtures.reference(name).sequences[0]
        let hidden = try loaded.model.hiddenStates(seq.map(Int32.init))
        let want = try Fixtures.referenceLogits(name, 0)
        #expect(hidden.count == seq.count && hidden[0].count == h)
        var worst: Float = 0
        for (t, x) in hidden.enumerated() {
            for o in 0..<v {
                var s = 0.0
                for i in 0..<h { s += Double(x[i]) * Double(w.f32[o * h + i]) }
                worst = max(worst, abs(Float(s) - want[t][o]))
            }
        }
        #expect(worst < 1e-4, "\(name): max |hidden x head - transformers' logits| \(worst)")
    }
}

@Suite struct EmbeddingPoolingTests {
    /// sentence-transformers' modules.json and pooling config read as written; each mode against a
    /// naive loop; a config it cannot honour named.
    @Test func poolingFollowsTheSentenceTransformersConfig() throws {
        let dir = Fixtures.scratch + "/pooling-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/1_Pooling", withIntermediateDirectories: true)
        #expect(try EmbeddingPooling.read(directory: dir) == .decoderDefault)
        try #"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}, {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#
            .write(toFile: dir + "/modules.json", atomically: true, encoding: .utf8)
        try #"{"word_embedding_dimension": 3, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false, "pooling_mode_lasttoken": false}"#
            .write(toFile: dir + "/1_Pooling/config.json", atomically: true, encoding: .utf8)
        let p = try EmbeddingPooling.read(directory: dir)
        #expect(p.mode == .mean && p.normalize)
        let h: [[Float]] = [[1, 2, 2], [3, -2, 4], [-1, 0, 0]]
        let mean: [Float] = [1, 0, 2], n = Float(5).squareRoot()
        #expect(zip(p.pool(h), mean.map { $0 / n }).allSatisfy { abs($0 - $1) < 1e-6 })
        #expect(EmbeddingPooling(mode: .max, normalize: false, origin: "").pool(h) == [3, 2, 4])
        #expect(EmbeddingPooling(mode: .cls, normalize: false, origin: "").pool(h) == [1, 2, 2])
        #expect(EmbeddingPooling(mode: .last, normalize: false, origin: "").pool(h) == [-1, 0, 0])
        try #"{"pooling_mode_mean_tokens": true, "pooling_mode_lasttoken": true}"#.write(toFile: dir + "/1_Pooling/config.json", atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try EmbeddingPooling.read(directory: dir) }
        try #"{"pooling_mode_weightedmean_tokens": true}"#.write(toFile: dir + "/1_Pooling/config.json", atomically: true, encoding: .utf8)
        do { _ = try EmbeddingPooling.read(directory: dir); Issue.record("accepted") } catch { #expect("\(error)".contains("pooling_mode_weightedmean_tokens")) }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
