require "securerandom"
require "uri"

require "vagrant/util/credential_scrubber"
require "vagrant/util/downloader"
require "vagrant/util/subprocess"
require "vagrant/util/which"

require_relative "errors"

module VagrantPlugins
  module Boxpack
    # A box's signature: OpenSSH's (PROTOCOL.sshsig), what `ssh-keygen -Y sign -n vagrant-box BOX`
    # writes over the box file's bytes, kept at the box's URL + .sig, and checked here with
    # `ssh-keygen -Y find-principals` (who the allowed signers say made it) and `ssh-keygen -Y verify`.
    class Signature
      NAMESPACE = "vagrant-box".freeze
      LIMIT = 65536 # bytes of a signature file; an SSHSIG is a few hundred
      CHUNK = 1024 * 1024

      # download: the Util::Downloader that fetched the box (its URL and headers);
      # env: BoxAdd's (the download options the user gave); hook: Vagrant's own hook
      # runner, which adds the authentication Vagrant uses for the host.
      def initialize(download, env, hook)
        @env, @hook = env, hook
        @headers = Array(download.headers).dup
        uri = URI.parse(download.source)
        uri.path = "#{uri.path}.sig"
        @url = uri.to_s
        uri.query = nil # a token in the query (VAGRANT_SERVER_ACCESS_TOKEN_BY_URL) stays out of messages
        @shown = Vagrant::Util::CredentialScrubber.scrub(uri.to_s)
      end

      # Raises a Boxpack error naming the signature unless an allowed signer signed box.
      def check!(box, allowed)
        keygen = Vagrant::Util::Which.which("ssh-keygen")
        raise Errors::SshKeygenMissing if !keygen

        file = @env[:tmp_path].join("boxpack-#{SecureRandom.hex(8)}.sig")
        begin
          fetch(file)
          principal = principal(keygen, file, allowed)
          said = verify(keygen, file, allowed, principal, box)
          @env[:ui].detail(I18n.t("vagrant_boxpack.signature_good", signature: @shown, said: said))
        ensure
          file.delete if file.exist?
        end
      end

      protected

      def fetch(file)
        d = Vagrant::Util::Downloader.new(@url, file,
          headers: @headers,
          ca_cert: @env[:box_download_ca_cert],
          ca_path: @env[:box_download_ca_path],
          insecure: @env[:box_download_insecure],
          client_cert: @env[:box_download_client_cert],
          location_trusted: @env[:box_download_location_trusted],
          disable_ssl_revoke_best_effort: @env[:box_download_disable_ssl_revoke_best_effort],
          box_extra_download_options: Array(@env[:box_extra_download_options]) + ["--max-filesize", LIMIT.to_s])
        @hook.call(:authenticate_box_downloader, downloader: d)
        d.download!
      rescue Vagrant::Errors::DownloaderError => e
        raise Errors::SignatureMissing, signature: @shown, reason: last_line(e.extra_data[:message].to_s)
      end

      def principal(keygen, file, allowed)
        r = Vagrant::Util::Subprocess.execute(keygen, "-Y", "find-principals", "-s", file.to_s, "-f", allowed)
        found = r.stdout.split
        return found.first if r.exit_code == 0 && !found.empty?

        raise Errors::SignatureNotAllowed, signature: @shown, allowed_signers: allowed,
          reason: last_line(r.stderr)
      end

      # ssh-keygen reads the box on its standard input, as it is read here, a chunk at a time.
      def verify(keygen, file, allowed, principal, box)
        r = File.open(box, "rb") do |f|
          Vagrant::Util::Subprocess.execute(keygen, "-Y", "verify", "-f", allowed, "-I", principal,
                                            "-n", NAMESPACE, "-s", file.to_s, notify: [:stdin]) do |_, stdin|
            chunk = f.read(CHUNK)
            chunk ? stdin.write(chunk) : stdin.close
          end
        end
        return r.stdout.strip if r.exit_code == 0

        raise Errors::SignatureBad, signature: @shown, principal: principal, reason: last_line(r.stderr)
      rescue Errno::EPIPE
        raise Errors::SignatureBad, signature: @shown, principal: principal, reason: "ssh-keygen stopped reading the box"
      end

      def last_line(text)
        lines = text.lines.map(&:strip).reject(&:empty?)
        lines.empty? ? "ssh-keygen failed" : lines.last
      end
    end
  end
end
