import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure GEMM rates, memory and disk bandwidth for the planner (cached).")
    @Option(name: .customLong("disk-path"), help: "Directory on the disk that will hold models and KV swap.") var diskPath: String = "."
    @Option(name: .customLong("disk-file"), help: "Measure the disk read speed on this existing file (e.g. a model's safetensors, the file that will stream) instead of a fresh scratch file; updates the cached profile's disk read figure.") var diskFile: String?
    @Option(help: "Also write the profile JSON here.") var out: String?
    @Flag(help: "Measure again even when a cached profile exists.") var refresh = false
    @Option(name: .customLong("routing"), help: "Measure this mixture of experts' routing on a calibration text and keep its histogram beside the profile: the planner predicts the expert cache's hit rate from it instead of uniform routing.") var routingModel: String?
    @Option(name: .customLong("calibration-file"), help: "With --routing: the text to route (default: a built-in text of prose, code and lists).") var calibrationFile: String?
    @Option(name: .customLong("calibration-tokens"), help: "With --routing: tokens of the text to route (the text repeats when shorter).") var calibrationTokens: Int = 512
    @Option(name: .customLong("ram-budget"), help: "With --routing: run the model under this many bytes (as generate --ram-budget).") var ramBudget: String?
    @OptionGroup var threads: ThreadOption

    func validate() throws {
        if routingModel == nil, calibrationFile != nil || ramBudget != nil {
            throw ValidationError("--calibration-file and --ram-budget measure a model's routing: give --routing MODEL")
        }
        if calibrationTokens < 1 || calibrationTokens > 65536 { throw ValidationError("--calibration-tokens: \(calibrationTokens) is not in 1...65536") }
        if let b = ramBudget, parseByteSize(b) == nil { throw ValidationError("--ram-budget: '\(b)' is not a size (e.g. 1GiB)") }
    }

    func run() throws {
        if let out { try FileIO.requireReplaceable(out) }  // before any work
        try threads.apply()
        if let routingModel { try measureRouting(routingModel); return }
        var p: HardwareProfile
        if let diskFile {
            p = try Profiler.cached() ?? Profiler.measure(diskPath: diskPath) { eprint($0) }
            p.diskReadBytesPerSecond = try Profiler.fileReadBandwidth(path: diskFile)
            p.diskScatteredReadBytesPerSecond = try Profiler.scatteredReadBandwidth(path: diskFile)
            p.diskPath = diskFile
            eprint(String(format: "disk read on %@: %.0f MB/s; scattered 8 MiB reads, 4 in flight: %.0f MB/s", diskFile as NSString,
                          p.diskReadBytesPerSecond / 1e6, (p.diskScatteredReadBytesPerSecond ?? 0) / 1e6))
            try Profiler.save(p)
        } else if !refresh, let c = Profiler.cached() {
            eprint("using the cached profile \(Profiler.cachePath) (--refresh measures again)")
            p = c
        } else {
            p = try Profiler.measure(diskPath: diskPath) { eprint($0) }
            try Profiler.save(p)
            eprint("saved \(Profiler.cachePath)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(p)
        if let out { try FileIO.writeAtomically(out, data) }
        print(String(decoding: data, as: UTF8.self))
    }
}

extension Profile {
    /// Routes the calibration text through the model (one prompt, no tokens generated) and keeps
    /// the histogram of the experts its tokens chose (`RoutingHistograms`).
    func measureRouting(_ path: String) throws {
        let folder = try ModelFolder(path: path)
        guard let moe = folder.spec.moe else { throw ValidationError("--routing: \(path) has no experts (\(folder.spec.architecture)): nothing to measure") }
        guard let tok = folder.tokenizer else { throw ValidationError("--routing: \(path) has no tokenizer to read the calibration text with") }
        let text: String
        if let calibrationFile {
            guard let d = try FileIO.readSmallFile(calibrationFile, limit: 64 << 20) else { throw ValidationError("--calibration-file: \(calibrationFile) not found") }
            guard let s = String(data: d, encoding: .utf8) else { throw ValidationError("--calibration-file: \(calibrationFile) is not UTF-8 text") }
            text = s
        } else {
            text = Profile.calibrationText
        }
        let once = try tok.encode(text, addSpecialTokens: false)
        guard !once.isEmpty else { throw ValidationError("--calibration-file: \(calibrationFile ?? "the text") has no tokens") }
        var prompt: [Int] = []
        while prompt.count < calibrationTokens { prompt += once.prefix(calibrationTokens - prompt.count) }
        // the benchmark routings force other experts than the model's
        if MoERouting.fromEnvironment != .model { throw ValidationError("--routing: STRATA_MOE_ROUTING is set: unset it to measure the model's own routing") }
        let session = Session(folder: folder, ramBudget: ramBudget.flatMap(parseByteSize))
        let t0 = Date()
        // prompts of at most 512 tokens (and within the model's context), one after another
        let per = max(1, min(512, folder.spec.maxPositions - 2))
        let requests = stride(from: 0, to: prompt.count, by: per).map {
            GenerationRequest(prompt: Array(prompt[$0..<min(prompt.count, $0 + per)]), parameters: SamplingParameters(temperature: 0, maxTokens: 1, stopAtEOS: false))
        }
        let result = try session.run(requests, options: Session.RunOptions(maxBatch: 1))
        guard let routing = result.routing, routing.tokens > 0 else { throw ValidationError("--routing: the run routed no tokens") }
        let stamp = ISO8601DateFormatter().string(from: Date())
        let hist = RoutingHistogram(model: URL(fileURLWithPath: path).standardizedFileURL.path, fingerprint: RoutingHistograms.fingerprint(folder),
                                    tokens: routing.tokens, experts: moe.experts, perToken: moe.expertsPerToken, counts: routing.layers, measured: stamp)
        let file = try RoutingHistograms.save(hist)
        eprint(String(format: "routed %d tokens through %d sparse layers in %.1f s; routing entropy %.3f of uniform; saved %@",
                      routing.tokens, routing.layers.filter { !$0.isEmpty }.count, Date().timeIntervalSince(t0), hist.entropy, file as NSString))
        // what the histogram predicts, beside uniform routing, for caches of a few sizes
        var m = PlannerMoE(experts: moe.experts, perToken: moe.expertsPerToken, sparseLayers: moe.sparseLayers, expertBytes: 1, expertParams: 1,
                           slotBytes: 1, denseLayerBytes: [], denseLayerParams: [])
        let total = moe.experts * moe.sparseLayers.filter { $0 }.count
        var lines: [String] = []
        for share in [0.05, 0.1, 0.25, 0.5, 0.75] {
            let slots = Int(Double(total) * share)
            m.routing = nil
            let uniform = m.steadyHitRate(slots: slots)
            m.routing = hist.shares
            lines.append(String(format: "  %3.0f%% of the experts cached (%d slots): %.1f%% hits (uniform routing: %.1f%%)", 100 * share, slots,
                                100 * m.steadyHitRate(slots: slots), 100 * uniform))
        }
        print("steady-state hit rate predicted from the histogram:\n" + lines.joined(separator: "\n"))
    }

    /// The default calibration text: prose, code, a list and numbers, so the routers see the
    /// kinds of tokens a chat model is given.
    static let calibrationText = """
    The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined \
    movable metal type, oil-based ink and a wooden screw press. Within fifty years, presses were working \
    in more than two hundred cities, and the price of a book fell by a factor of ten.

    def merge_sorted(a, b):
        result, i, j = [], 0, 0
        while i < len(a) and j < len(b):
            if a[i] <= b[j]:
                result.append(a[i]); i += 1
            else:
                result.append(b[j]); j += 1
        return result + a[i:] + b[j:]

    Shopping list: 2 kg of flour, 12 eggs, 500 g of butter, a jar of honey, 3 lemons.
    Q: What is 17 multiplied by 23? A: 391. Q: Convert 100 degrees Fahrenheit to Celsius. A: 37.8.
    {"name": "Ada Lovelace", "born": 1815, "known_for": ["the Analytical Engine", "the first published algorithm"]}
    Il pleut doucement sur la ville; die Straßen sind leer, y el viento sopla desde el mar.
    SELECT customer_id, SUM(amount) FROM orders WHERE created_at >= '2024-01-01' GROUP BY customer_id;
    Photosynthesis converts light energy into chemical energy: carbon dioxide and water become glucose and oxygen.

    struct Point { var x: Double; var y: Double }
    func distance(_ a: Point, _ b: Point) -> Double { ((a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)).squareRoot() }
    for (i, name) in ["alpha", "beta", "gamma"].enumerated() { print("\\(i): \\(name)") }

    Dear Ms. Okafor, thank you for your letter of 3 March. I am sorry the parcel arrived damaged; a \
    replacement left our warehouse in Rotterdam this morning and should reach you by Friday.

    1. Preheat the oven to 200 °C. 2. Whisk the eggs with the sugar until pale. 3. Fold in the flour \
    gently, pour into a lined tin and bake for 25 minutes, until a skewer comes out clean.

    The mitochondrion has an outer membrane and a folded inner membrane, the cristae, where the \
    electron transport chain pumps protons and ATP synthase turns their gradient into ATP.
    In 1969 Apollo 11 landed in the Sea of Tranquility; Neil Armstrong and Buzz Aldrin spent about \
    two and a half hours outside the lunar module while Michael Collins orbited above.
    $ git rebase -i HEAD~3 && git push --force-with-lease origin feature/login
    | Country | Capital | Population (millions) |
    | Japan | Tokyo | 124.5 |
    | Brazil | Brasília | 203.1 |
    | Kenya | Nairobi | 55.1 |
    Why is the sky blue? Sunlight scatters off the molecules of the air, and short wavelengths scatter \
    far more than long ones (Rayleigh scattering), so blue light reaches us from every direction.
    """
}

/// The cached profile, or measured now (and cached), logging to stderr.
func loadProfile() throws -> HardwareProfile { try Session.hardwareProfile { eprint($0) } }
