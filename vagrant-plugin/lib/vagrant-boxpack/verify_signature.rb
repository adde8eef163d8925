require "delegate"
require "log4r"

require_relative "errors"
require_relative "signature"

module VagrantPlugins
  module Boxpack
    # Middleware before BoxAdd: when allowed signers are set, the box BoxAdd downloaded is
    # checked against its signature before the box collection adds it; a box that fails is
    # never added (BoxAdd deletes its download). Without the setting, nothing changes.
    class VerifySignature
      def initialize(app, env)
        @app = app
        @logger = Log4r::Logger.new("vagrant::boxpack::verify_signature")
      end

      def call(env)
        allowed = allowed_signers(env)
        return @app.call(env) if !allowed || env[:box_collection].is_a?(CheckedBoxes)

        # BoxAdd#downloader hands each Util::Downloader to the :authenticate_box_downloader
        # hook, its destination the file BoxAdd later passes to BoxCollection#add
        # (lib/vagrant/action/builtin/box_add.rb): seen here, the box's URL is known there.
        hook, boxes, downloads = env[:hook], env[:box_collection], {}
        env[:hook] = lambda do |name, opts = nil|
          downloads[opts[:downloader].destination] = opts[:downloader] if name == :authenticate_box_downloader
          hook.call(name, opts)
        end
        env[:box_collection] = CheckedBoxes.new(boxes) do |path|
          download = downloads[path.to_s]
          raise Errors::SignatureMissing, signature: "#{path}.sig", reason: "where the box came from is not known" if !download

          @logger.info("checking #{download.source}'s signature against #{allowed}")
          Signature.new(download, env, hook).check!(path, allowed)
        end
        begin
          @app.call(env)
        ensure
          env[:hook], env[:box_collection] = hook, boxes
        end
      end

      protected

      def allowed_signers(env)
        config = env[:machine] ? env[:machine].config : env[:env].vagrantfile.config
        path = config.boxpack.allowed_signers
        return nil if !path

        path = File.expand_path(path, env[:env].cwd)
        File.open(path, "r") {}
        path
      rescue SystemCallError => e
        raise Errors::AllowedSignersMissing, path: path, reason: e.message.sub(/ @ .*/, "")
      end

      # The box collection, checking each box's signature before it is added.
      class CheckedBoxes < SimpleDelegator
        def initialize(boxes, &check)
          super(boxes)
          @check = check
        end

        def add(path, *args, **opts)
          @check.call(path)
          __getobj__.add(path, *args, **opts)
        end
      end
    end
  end
end
