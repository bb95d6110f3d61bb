"""WhiteNoise's middleware, made async-capable for the asgi preset.

WhiteNoise 6.12's middleware is sync only. Under ASGI, Django runs a sync
middleware in a thread, and the rest of the chain after it back in the event
loop: two hops on every request, static or not. This subclass finds the file
as WhiteNoise does (in the dict of files it read at startup, or on disk when
autorefresh is on, under DEBUG) and goes to a thread only to serve one. Under
WSGI it is WhiteNoise's own middleware.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.respond_async(request)
        return super().__call__(request)

    async def respond_async(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve)(static_file, request)
